// The agent wires its configured exporters to real peers: IPFIX messages reach a UDP
// collector socket and OTLP/HTTP JSON exports reach an HTTP receiver; a Diameter server
// that is not there shows as down; all show in `ubia status`, and shutdown stays within
// two seconds with them running.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import { cli, startAgent, type AgentProcess } from './support/agent.js';
import { removeMeter, tempDir } from './support/testbed.js';
import { waitFor } from './support/wait.js';
import type { StatusResult } from '../src/control/protocol.js';

let dir: string;
let pinDir: string;
let agent: AgentProcess | undefined;
let collector: Socket;
let receiver: Server;
const ipfixMessages: Buffer[] = [];
const otlpBodies: string[] = [];

beforeAll(async () => {
  dir = tempDir('ubia-exp-');
  pinDir = `/sys/fs/bpf/ubia-test-exp-${process.pid}`;
  collector = createSocket('udp4');
  collector.on('message', (m) => ipfixMessages.length < 1000 && ipfixMessages.push(m));
  await new Promise<void>((r) => collector.bind(0, '127.0.0.1', r));
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (req.url === '/v1/metrics' && otlpBodies.length < 100) otlpBodies.push(body);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
});

afterAll(async () => {
  await agent?.stop();
  collector?.close();
  receiver?.close();
  await removeMeter(pinDir);
  rmSync(dir, { recursive: true, force: true });
});

describe('agent → exporters', () => {
  it('feeds IPFIX and OTLP peers, shows an absent Diameter server as down, and stops within 2 s', async () => {
    const ipfixPort = (collector.address() as AddressInfo).port;
    const otlpPort = (receiver.address() as AddressInfo).port;
    const closedPort = await new Promise<number>((resolve) => {
      const s = createNetServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    agent = await startAgent({
      dir,
      pinDir,
      extra: `
[ipfix]
active_timeout = 1
usage_interval = 1

[[ipfix.collectors]]
address = "127.0.0.1"
port = ${ipfixPort}
transport = "udp"

[otlp]
endpoint = "http://127.0.0.1:${otlpPort}/v1/metrics"
protocol = "http/json"
interval = 1
timeout = 1

[diameter]
origin_realm = "test.example"
destination_realm = "aaa.example"
servers = [ { host = "127.0.0.1", port = ${closedPort} } ]
`,
    });
    await waitFor('an IPFIX message at the collector', () => (ipfixMessages.length > 0 ? true : undefined));
    // RFC 7011 §3.1: every message starts with version 10 and its own length
    expect(ipfixMessages[0]!.readUInt16BE(0)).toBe(10);
    expect(ipfixMessages[0]!.readUInt16BE(2)).toBe(ipfixMessages[0]!.length);
    await waitFor('an OTLP export at the receiver', () => (otlpBodies.some((b) => b.includes('"ubia')) ? true : undefined));

    const st = JSON.parse(cli(agent.socket, ['status', '--json']).stdout) as StatusResult;
    expect(st.exporters.map((e) => e.name).sort()).toEqual(['diameter', 'ipfix', 'otlp']);
    expect(st.exporters.find((e) => e.name === 'diameter')!.state).toBe('down');

    const t0 = Date.now();
    expect(await agent.stop()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2000);
    agent = undefined;
  });
});
