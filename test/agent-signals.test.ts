// The real agent under signal storms, against a real OTLP/HTTP receiver (an HTTP server
// in this test counting the exports it gets per URL path): SIGHUPs in a burst leave
// exactly the last configuration's exporter running, and a second SIGTERM during the
// shutdown neither kills the agent nor skips the exporters' final export.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, writeAgentConfig, type AgentSetup } from './support/agent.js';
import { createTestbed, type Testbed } from './support/testbed.js';
import { sleep, waitFor } from './support/wait.js';

interface Receiver {
  port: number;
  /** posts received, by URL path, in arrival order */
  posts: { path: string; at: number }[];
  close(): Promise<void>;
}

/** OTLP/HTTP: any POST is taken, answered with the empty (full success) response after
 *  600 ms, so that closing an exporter (its final export) takes that long. */
function startReceiver(): Promise<Receiver> {
  const posts: Receiver['posts'] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      posts.push({ path: req.url ?? '', at: Date.now() });
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(), 600);
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        posts,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      }),
    );
  });
}

const otlpTo = (port: number, path: string) => `\n[otlp]\nendpoint = "http://127.0.0.1:${port}${path}"\ninterval = 1\ntimeout = 1\n`;

let bed: Testbed;
let receiver: Receiver;

beforeAll(async () => {
  bed = await createTestbed('signals', { users: 0 });
  receiver = await startReceiver();
}, 60_000);

afterAll(async () => {
  await receiver?.close();
  await bed?.remove();
});

describe('signals', () => {
  it('10 SIGHUPs 0.2 s apart, each naming another endpoint: only the last one is exported to afterwards', async () => {
    const setup: AgentSetup = { dir: bed.dir, pinDir: bed.pinDir, extra: otlpTo(receiver.port, '/cfg0/v1/metrics') };
    const agent = await startAgent(setup);
    try {
      await waitFor('a first export', () => (receiver.posts.some((p) => p.path === '/cfg0/v1/metrics') ? true : undefined));
      for (let i = 1; i <= 10; i++) {
        writeAgentConfig({ ...setup, extra: otlpTo(receiver.port, `/cfg${i}/v1/metrics`) });
        agent.proc.kill('SIGHUP');
        await sleep(200);
      }
      // every reload done (each closes an exporter: up to 1.5 s), then watch for 4 intervals
      await waitFor('the last reload', () => (receiver.posts.some((p) => p.path === '/cfg10/v1/metrics') ? true : undefined));
      await sleep(2000);
      const mark = Date.now();
      await sleep(4000);
      const after = receiver.posts.filter((p) => p.at >= mark);
      const byPath = new Map<string, number>();
      for (const p of after) byPath.set(p.path, (byPath.get(p.path) ?? 0) + 1);
      expect(Object.fromEntries(byPath)).toEqual({ '/cfg10/v1/metrics': expect.any(Number) });
      expect(byPath.get('/cfg10/v1/metrics')).toBeGreaterThanOrEqual(3);
      expect(agent.logs()).not.toMatch(/"level":(50|60)/);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 60_000);

  it('a second SIGTERM during the shutdown (as `timeout -s TERM` sends) changes nothing: final export made, exit 0', async () => {
    const agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir, extra: otlpTo(receiver.port, '/stop/v1/metrics') });
    await waitFor('a first export', () => (receiver.posts.some((p) => p.path === '/stop/v1/metrics') ? true : undefined));
    const exited = new Promise<number | null>((r) => agent.proc.once('exit', (code) => r(code)));
    const signalledAt = Date.now();
    agent.proc.kill('SIGTERM');
    await sleep(300); // the final export waits for the receiver's answer
    agent.proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(receiver.posts.some((p) => p.path === '/stop/v1/metrics' && p.at >= signalledAt)).toBe(true);
    expect(agent.logs()).toContain('already stopping');
    expect(agent.logs()).toContain('agent stopped');
  }, 60_000);
});
