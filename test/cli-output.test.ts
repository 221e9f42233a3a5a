// What the tabular commands print for real flows: readable endpoints (an IPv4 peer of an
// IPv6 socket as 198.18.x.2:port), ended flows newest first with their end time,
// --limit, and --csv with the same exact figures as --json.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, startAgent, type AgentProcess } from './support/agent.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { sleep, waitFor } from './support/wait.js';
import type { FlowsResult, ProcsResult, UsersResult } from '../src/control/protocol.js';

let bed: Testbed;
let agent: AgentProcess;
let fay: TestUser;

beforeAll(async () => {
  bed = await createTestbed('out', { users: 1, sinkPort: 9041 });
  [fay] = bed.users as [TestUser];
  agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
  // first over an IPv6 socket to the IPv4-mapped address, then a plain IPv4 one
  await sinkTraffic(fay, { host: `::ffff:${bed.net.peerV4}`, port: bed.sink.port, send: 100_000, reply: 1000, ms: 200 });
  await sleep(1100); // a second apart: distinct end times
  await sinkTraffic(fay, { host: bed.net.peerV4, port: bed.sink.port, send: 200_000, reply: 1000, ms: 200 });
  await waitFor('both flows ended', () => {
    const f = JSON.parse(cli(agent.socket, ['flows', '-u', fay.name, '--json']).stdout) as FlowsResult;
    return f.ended.filter((r) => r.txPayloadBytes >= 100_000).length === 2 ? true : undefined;
  });
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await bed?.remove();
});

const run = (args: string[]) => {
  const r = cli(agent.socket, args);
  if (r.code !== 0) throw new Error(`ubia ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
};

describe('ubia flows', () => {
  it('shows IPv4 peers as a.b.c.d:port, ended flows newest first with the time they ended', () => {
    const text = run(['flows', '-u', fay.name]);
    expect(text).not.toContain('::ffff:');
    const ended = text.slice(text.indexOf('recently ended, newest first: 2'));
    const lines = ended.split('\n');
    expect(lines[1]).toMatch(/^PROTO\s+LOCAL\s+REMOTE\s+USER\s+PID\s+COMM\s+RX\s+TX\s+ENDED$/);
    const rows = lines.slice(2, 4);
    for (const l of rows) expect(l).toMatch(new RegExp(`^tcp\\s+${bed.net.hostV4.replace(/\./g, '\\.')}:\\d+\\s+${bed.net.peerV4.replace(/\./g, '\\.')}:${bed.sink.port}\\s+${fay.name}\\s.*\\d\\d:\\d\\d:\\d\\d$`));
    // the later, larger flow (about 200 kB sent) first
    const json = JSON.parse(run(['flows', '-u', fay.name, '--json'])) as FlowsResult;
    expect(json.ended.map((f) => f.txPayloadBytes)).toEqual([200_008, 100_008]);
    expect(json.ended[0]!.lastSeen > json.ended[1]!.lastSeen).toBe(true);
  });

  it('--limit keeps the newest and says so', () => {
    const text = run(['flows', '-u', fay.name, '--limit', '1']);
    expect(text).toContain('recently ended, newest first: 2 (newest 1 shown; --limit)');
    const json = JSON.parse(run(['flows', '-u', fay.name, '--limit', '1', '--json'])) as FlowsResult;
    expect(json.ended.map((f) => f.txPayloadBytes)).toEqual([200_008]);
  });
});

describe('--csv', () => {
  const parse = (text: string) => {
    const [header, ...rows] = text.trim().split('\n');
    const names = header!.split(',');
    return rows.map((r) => Object.fromEntries(r.split(',').map((v, i) => [names[i]!, v])));
  };

  it('users, procs, flows and top: a header and exact figures, the same as --json', () => {
    const users = JSON.parse(run(['users', '--json'])) as UsersResult;
    const mine = users.users.find((u) => u.uid === fay.uid)!;
    const csvUsers = parse(run(['users', '--csv']));
    expect(csvUsers.find((r) => r.uid === String(fay.uid))).toEqual(
      Object.fromEntries(['uid', 'user', 'rxBytes', 'txBytes', 'rxPackets', 'txPackets', 'rxPayloadBytes', 'txPayloadBytes'].map((k) => [k, String(mine[k as keyof typeof mine])])),
    );

    const flows = parse(run(['flows', '-u', fay.name, '--csv']));
    expect(flows.filter((f) => f.state === 'ended').map((f) => [f.remote, f.txPayloadBytes])).toEqual([
      [`${bed.net.peerV4}:${bed.sink.port}`, '200008'],
      [`${bed.net.peerV4}:${bed.sink.port}`, '100008'],
    ]);

    const procs = run(['procs', '--csv']).split('\n');
    expect(procs[0]).toBe('pid,uid,user,comm,rxRate,txRate,rxPayloadRate,txPayloadRate,rxBytes,txBytes,rxPackets,txPackets,rxPayloadBytes,txPayloadBytes');
    const procRows = parse(procs.join('\n'));
    expect(procRows.length).toBe((JSON.parse(run(['procs', '--json'])) as ProcsResult).processes.length);

    const top = run(['top', '--csv', '-n', '2', '--interval', '0.2']).trim().split('\n');
    expect(top.filter((l) => l.startsWith('at,')).length).toBe(1); // the header once
    expect(top.some((l) => l.includes(`,${fay.uid},${fay.name},`))).toBe(true);
  });

  it('--json and --csv together are refused', () => {
    const r = cli(agent.socket, ['users', '--json', '--csv']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot be used with/);
  });
});
