// The control socket of a real agent: malformed, oversized, unknown and forbidden
// requests get a JSON error reply, and the agent keeps serving; SO_PEERCRED decides
// who the caller is; SIGHUP reloads.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConnection } from 'node:net';
import { writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { startAgent, writeAgentConfig, type AgentProcess } from './support/agent.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sleep, waitFor } from './support/wait.js';
import { controlRequest } from '../src/control/client.js';
import type { FlowQueryResult, StatusResult } from '../src/control/protocol.js';

/** the flow store on: flow-history queries take the server's asynchronous path (its
 *  enabled key needs a restart, so every config this agent reloads keeps it) */
const HISTORY = '\n[history]\nenabled = true\n';

let bed: Testbed;
let agent: AgentProcess;
let carol: TestUser;

beforeAll(async () => {
  bed = await createTestbed('ctl', { users: 1 });
  [carol] = bed.users as [TestUser];
  agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir, extra: HISTORY });
});

afterAll(async () => {
  await agent?.stop();
  await bed?.remove();
});

/** Writes raw bytes, collects reply lines until `lines` arrived or the peer closed. */
function raw(data: string | Buffer, lines: number, timeoutMs = 5000): Promise<{ replies: Record<string, unknown>[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = createConnection(agent.socket);
    let buf = '';
    let closed = false;
    const done = () => {
      clearTimeout(t);
      s.destroy();
      resolve({ replies: buf.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>), closed });
    };
    const t = setTimeout(() => reject(new Error(`no ${lines} replies within ${timeoutMs} ms; got ${buf}`)), timeoutMs);
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.split('\n').filter(Boolean).length >= lines) done();
    });
    s.on('end', () => {
      closed = true;
      done();
    });
    s.on('error', () => undefined);
    s.write(data);
  });
}

const status = () => controlRequest<StatusResult>(agent.socket, { op: 'status' });

describe('control socket', () => {
  it('flow-history queries (answered off the event loop) keep their place among pipelined replies', async () => {
    const now = Date.now();
    const { replies } = await raw(
      [
        { op: 'flows.query', id: 1, from: now - 3_600_000, to: now, groupBy: 'user' },
        { op: 'status', id: 2 },
        { op: 'flows.query', id: 3, from: now, to: now - 1 },
        { op: 'flows.query', id: 4, from: 0, to: now, where: 'port ==' },
        { op: 'flows.query', id: 5, from: 0, to: now },
      ]
        .map((r) => JSON.stringify(r))
        .join('\n') + '\n',
      5,
    );
    expect(replies.map((r) => r.id)).toEqual([1, 2, 3, 4, 5]);
    expect(replies.map((r) => (r.error as { code?: string } | undefined)?.code)).toEqual([undefined, undefined, 'bad_request', 'bad_request', undefined]);
    expect((replies[0]!.result as FlowQueryResult).keys).toEqual(['user']);
    expect((replies[4]!.result as FlowQueryResult).keys).toEqual([]);
  });

  it('answers bad requests with JSON errors on the same connection', async () => {
    const { replies } = await raw(
      [
        'not json',
        '[1,2,3]',
        '{"op":"nope","id":7}',
        '{"op":"users","from":"yesterday","to":1}',
        '{"op":"procs","user":"x","extra":true,"id":"s"}',
        '{"op":"users","from":10,"to":5}',
        '{"op":"status","id":9}',
      ].join('\n') + '\n',
      7,
    );
    expect(replies.map((r) => r.ok)).toEqual([false, false, false, false, false, false, true]);
    expect(replies.map((r) => (r.error as { code?: string } | undefined)?.code)).toEqual([
      'bad_json',
      'bad_request',
      'bad_request',
      'bad_request',
      'bad_request',
      'bad_request',
      undefined,
    ]);
    expect(replies[2]!.id).toBe(7);
    expect(replies[4]!.id).toBe('s');
    expect(replies[6]!.id).toBe(9);
    expect(String((replies[3]!.error as { message: string }).message)).toMatch(/from/);
  });

  it('refuses an oversized request and hangs up, and keeps serving others', async () => {
    const { replies, closed } = await raw(Buffer.alloc(200_000, 'x'), 1);
    expect(replies[0]).toMatchObject({ ok: false, error: { code: 'too_large' } });
    expect(closed || replies.length === 1).toBe(true);
    expect((await status()).agent.pid).toBe(agent.proc.pid);
  });

  it('survives clients that connect and vanish, or send half a line', async () => {
    for (let i = 0; i < 50; i++) {
      const s = createConnection(agent.socket);
      s.on('error', () => undefined);
      s.write(i % 2 ? '{"op":"sta' : '');
      s.destroy();
    }
    await sleep(200);
    expect((await status()).agent.you).toEqual({ uid: 0, admin: true, role: 'admin' });
  });

  it('a client pipelining thousands of requests gets every answer without holding up others', async () => {
    const flood = raw('{"op":"status"}\n'.repeat(3000), 3000, 60_000);
    const t0 = Date.now();
    const other = await status();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(other.agent.you.uid).toBe(0);
    const { replies } = await flood;
    expect(replies).toHaveLength(3000);
    expect(replies.every((r) => r.ok === true)).toBe(true);
  });

  it('knows the caller from the kernel; the product has no test switch (debug.stall is not a request)', () => {
    const script = `
      const s = require('node:net').createConnection(${JSON.stringify(agent.socket)});
      let b = ''; s.on('data', (d) => { b += d; if (b.split('\\n').length > 2) { console.log(b); s.destroy(); } });
      s.write('{"op":"status"}\\n{"op":"debug.stall","ms":1000}\\n');`;
    const r = spawnSync('setpriv', [`--reuid=${carol.uid}`, `--regid=${carol.gid}`, '--clear-groups', process.execPath, '-e', script], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    const [st, stall] = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ok: boolean; result?: StatusResult; error?: { code: string } });
    expect(st!.result!.agent.you).toEqual({ uid: carol.uid, admin: false, role: 'self' });
    expect(stall).toMatchObject({ ok: false, error: { code: 'bad_request' } });
  });

  it('SIGHUP reloads a good config and keeps the running one when the new one is bad', async () => {
    writeFileSync(agent.configFile, 'this is = = not toml\n');
    agent.proc.kill('SIGHUP');
    await waitFor('the reload error in the log', () => (agent.logs().includes('the new configuration is invalid') ? true : undefined));
    expect(agent.logs()).toMatch(/ubia\.toml:1/);
    expect((await status()).agent.pollIntervalSeconds).toBe(0.2);

    writeAgentConfig({ dir: bed.dir, pinDir: bed.pinDir, pollInterval: 0.5, extra: HISTORY });
    agent.proc.kill('SIGHUP');
    await waitFor('the new poll interval', async () => ((await status()).agent.pollIntervalSeconds === 0.5 ? true : undefined));
    expect(agent.logs()).toContain('configuration reloaded');
  });
});
