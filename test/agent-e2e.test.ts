// The real agent against the real kernel meter: two test users send known traffic to a
// netns over veth; `ubia users --json` must show exactly their payload bytes, wire
// figures consistent with them; SIGKILL mid-traffic loses and double-counts nothing; a
// non-root user sees only their own row.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { cli, connectAs, startAgent, writeAgentConfig, type AgentProcess } from './support/agent.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { sleep, waitFor } from './support/wait.js';
import { adminSocketOf, type StatusResult, type UsersResult } from '../src/control/protocol.js';

let bed: Testbed;
let alice: TestUser;
let bob: TestUser;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  bed = await createTestbed('e2e', { users: 2, sinkPort: 9000 });
  [alice, bob] = bed.users as [TestUser, TestUser];
});

afterAll(async () => {
  await agent?.stop();
  await bed?.remove();
});

function usersJson(asUser?: TestUser): UsersResult {
  const r = cli(agent!.socket, ['users', '--since', '1h', '--json'], asUser);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as UsersResult;
}

const rowOf = (res: UsersResult, u: TestUser) => res.users.find((x) => x.uid === u.uid);

/** Wire figures must cover the payload plus at most ~80 bytes of headers per packet. */
function expectWireConsistent(row: NonNullable<ReturnType<typeof rowOf>>) {
  expect(row.txBytes).toBeGreaterThan(row.txPayloadBytes);
  expect(row.rxBytes).toBeGreaterThan(row.rxPayloadBytes);
  expect(row.txBytes).toBeLessThanOrEqual(row.txPayloadBytes + 80 * row.txPackets);
  expect(row.rxBytes).toBeLessThanOrEqual(row.rxPayloadBytes + 80 * row.rxPackets);
  expect(row.txPackets).toBeGreaterThan(0);
  expect(row.rxPackets).toBeGreaterThan(0);
}

describe('ubia agent end to end (real kernel)', () => {
  it('books each user\'s exact payload bytes, over IPv4 and IPv6', async () => {
    agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
    const [a, b] = await Promise.all([
      sinkTraffic(alice, { host: bed.net.peerV4, port: bed.sink.port, send: 3_000_000, reply: 1_000_000, ms: 500 }),
      sinkTraffic(bob, { host: bed.net.peerV6, port: bed.sink.port, send: 200_000, reply: 5_000_000, ms: 500 }),
    ]);
    expect(a).toBe(1_000_000);
    expect(b).toBe(5_000_000);
    const res = await waitFor('both users booked', () => {
      const r = usersJson();
      const ra = rowOf(r, alice);
      const rb = rowOf(r, bob);
      return ra?.rxPayloadBytes === 1_000_000 && rb?.rxPayloadBytes === 5_000_000 ? r : undefined;
    });
    const ra = rowOf(res, alice)!;
    const rb = rowOf(res, bob)!;
    expect(ra).toMatchObject({ user: alice.name, txPayloadBytes: 3_000_008, rxPayloadBytes: 1_000_000 });
    expect(rb).toMatchObject({ user: bob.name, txPayloadBytes: 200_008, rxPayloadBytes: 5_000_000 });
    expectWireConsistent(ra);
    expectWireConsistent(rb);
    expect(Object.keys(ra)).toEqual(['uid', 'user', 'rxBytes', 'txBytes', 'rxPackets', 'txPackets', 'rxPayloadBytes', 'txPayloadBytes']);
    expect(res.unattributed).toEqual(expect.objectContaining({ rxBytes: expect.any(Number), txBytes: expect.any(Number) }));
    expect(Date.parse(res.to) - Date.parse(res.from)).toBe(3_600_000);

    // an explicit --from/--to range holding the traffic gives the same rows
    const from = new Date(Date.now() - 600_000).toISOString();
    const to = new Date(Date.now() + 60_000).toISOString();
    const ranged = JSON.parse(cli(agent!.socket, ['users', '--from', from, '--to', to, '--json']).stdout) as UsersResult;
    expect(ranged.from).toBe(from);
    expect(rowOf(ranged, alice)).toEqual(ra);
    expect(rowOf(ranged, bob)).toEqual(rb);
  });

  it('status shows the kernel hooks (and why any is off), the ledger and the health counters', () => {
    const r = cli(agent!.socket, ['status', '--json']);
    expect(r.code).toBe(0);
    const st = JSON.parse(r.stdout) as StatusResult;
    expect(st.agent.pid).toBe(agent!.proc.pid);
    expect(st.meter.hooks.length).toBeGreaterThan(0);
    for (const h of st.meter.hooks) expect(h.detail).not.toBe('');
    expect(st.meter.hooks.some((h) => h.active)).toBe(true);
    expect(st.meter.health.overflows).toEqual({ users: 0, processes: 0, flows: 0, peers: 0, interfaces: 0 });
    expect(st.meter.interfaces!.map((i) => i.name)).toContain(bed.net.hostInterface);
    expect(st.ledger.sizeBytes).toBeGreaterThan(0);
    expect(st.ledger.lastError).toBeNull();
    const text = cli(agent!.socket, ['status']).stdout;
    expect(text).toMatch(/^agent: {6}running, pid \d+/);
    expect(text).toMatch(/ledger: {5}.*ledger\.db, [\d.]+ (B|KiB|MiB)/);
  });

  it('a non-root user sees only their own row; root sees all', () => {
    const mine = usersJson(alice);
    expect(mine.users.map((u) => u.uid)).toEqual([alice.uid]);
    expect(mine.unattributed).toBeNull();
    const all = usersJson();
    expect(all.users.map((u) => u.uid)).toEqual(expect.arrayContaining([alice.uid, bob.uid]));
    const procs = cli(agent!.socket, ['procs', '--json'], bob);
    expect(procs.code).toBe(0);
    for (const p of (JSON.parse(procs.stdout) as { processes: { uid: number }[] }).processes) expect(p.uid).toBe(bob.uid);
  });

  it('members of the admin group see everyone (after a SIGHUP reload)', async () => {
    const group = `ubia-t-adm-${process.pid}`;
    execFileSync('groupadd', [group]);
    try {
      execFileSync('usermod', ['-aG', group, bob.name]);
      writeAgentConfig({ dir: bed.dir, pinDir: bed.pinDir, adminGroup: group });
      agent!.proc.kill('SIGHUP');
      await waitFor('the reload', () => (agent!.logs().includes('configuration reloaded') ? true : undefined));
      const seen = usersJson(bob);
      expect(seen.users.map((u) => u.uid)).toEqual(expect.arrayContaining([alice.uid, bob.uid]));
      expect(seen.unattributed).not.toBeNull();
      expect(usersJson(alice).users.map((u) => u.uid)).toEqual([alice.uid]);
      // the admin socket followed the reload: root:group 0660, open to a process in the group
      const adminSocket = adminSocketOf(agent!.socket);
      const groupId = statSync(adminSocket).gid;
      expect(groupId).toBe(Number(execFileSync('getent', ['group', group], { encoding: 'utf8' }).split(':')[2]));
      expect(statSync(adminSocket).mode & 0o777).toBe(0o660);
      expect(connectAs(bob, adminSocket, [groupId])).toBe('connected');
      expect(connectAs(alice, adminSocket)).toBe('EACCES');
    } finally {
      writeAgentConfig({ dir: bed.dir, pinDir: bed.pinDir });
      agent!.proc.kill('SIGHUP');
      spawnSync('groupdel', [group]);
    }
  });

  it('SIGKILL in the middle of traffic, then a restart: no loss, no double count', async () => {
    const before = rowOf(usersJson(), alice)!;
    const traffic = sinkTraffic(alice, { host: bed.net.peerV4, port: bed.sink.port, send: 4_000_000, reply: 2_000_000, ms: 3000 });
    await sleep(1200);
    await agent!.kill(); // the kernel keeps counting in the pinned maps
    await sleep(800);
    agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
    expect(await traffic).toBe(2_000_000);
    const want = { tx: before.txPayloadBytes + 4_000_008, rx: before.rxPayloadBytes + 2_000_000 };
    const row = await waitFor('the rest of the traffic booked', () => {
      const r = rowOf(usersJson(), alice);
      return r && r.rxPayloadBytes >= want.rx && r.txPayloadBytes >= want.tx ? r : undefined;
    });
    // two more polls: a double count would show up as extra bytes
    await sleep(1000);
    const settled = rowOf(usersJson(), alice)!;
    expect(settled).toEqual(row);
    expect(settled.txPayloadBytes).toBe(want.tx);
    expect(settled.rxPayloadBytes).toBe(want.rx);
    expect(agent.logs()).toContain('"resumed":true'); // the new agent picked up the pinned counters
  });

  it('SIGTERM flushes and exits 0 within two seconds; the totals are there after a restart', async () => {
    const before = usersJson();
    const t0 = Date.now();
    expect(await agent!.stop()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2000);
    const down = cli(join(bed.dir, 'control.sock'), ['users', '--json']);
    expect(down.code).toBe(2);
    expect(down.stderr).toMatch(/not running.*\n.*ubia agent --daemon/);
    agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
    const after = usersJson();
    expect(rowOf(after, alice)).toEqual(rowOf(before, alice));
    expect(rowOf(after, bob)).toEqual(rowOf(before, bob));
  });

  it('procs and flows show the test users\' processes and flows', async () => {
    const traffic = sinkTraffic(bob, { host: bed.net.peerV4, port: bed.sink.port, send: 500_000, reply: 100, ms: 1500 });
    const active = await waitFor('bob\'s active flow', () => {
      const r = cli(agent!.socket, ['flows', '--user', bob.name, '--json']);
      const f = (JSON.parse(r.stdout) as { active: { remoteAddress: string; remotePort: number; localPort: number; pid: number; user: string }[] }).active;
      return f.find((x) => x.remoteAddress === bed.net.peerV4 && x.remotePort === bed.sink.port);
    });
    expect(active.user).toBe(bob.name);
    const procs = JSON.parse(cli(agent!.socket, ['procs', '--user', String(bob.uid), '--json']).stdout) as { processes: { pid: number; uid: number }[] };
    expect(procs.processes.some((p) => p.pid === active.pid && p.uid === bob.uid)).toBe(true);
    await traffic;
    // the flow ends once, and its record holds its whole life (the agent folded every
    // poll all through it)
    type Ended = { localPort: number; remotePort: number; txPayloadBytes: number; rxPayloadBytes: number };
    const ended = await waitFor('the flow to show as ended', () => {
      const r = JSON.parse(cli(agent!.socket, ['flows', '--user', bob.name, '--json']).stdout) as { active: Ended[]; ended: Ended[] };
      const mine = (l: Ended[]) => l.filter((f) => f.remotePort === bed.sink.port && f.localPort === active.localPort);
      return mine(r.ended).length > 0 && mine(r.active).length === 0 ? mine(r.ended) : undefined;
    });
    expect(ended.map((f) => [f.txPayloadBytes, f.rxPayloadBytes])).toEqual([[500_008, 100]]);
  });
});
