// Users beyond the kernel user table: a meter loaded with a 2-slot table, three test users
// sending known payloads over a veth. At least one of them finds no free slot; its bytes
// must be counted (wire bytes with the unattributed ones, payload on its own) and shown by
// `ubia status`, not dropped.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import type { StatusResult, UsersResult } from '../src/control/protocol.js';
import { cli, startAgent, type AgentProcess } from './support/agent.js';
import { createTestbed, type Testbed } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { waitFor } from './support/wait.js';

let bed: Testbed;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  bed = await createTestbed('utab', { users: 3, sinkPort: 9000 });
});

afterAll(async () => {
  await agent?.kill();
  await bed?.remove();
});

const json = <T>(args: string[]): T => {
  const r = cli(agent!.socket, [...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
};

describe('users beyond the user table', () => {
  it('are counted, payload included, and shown by ubia status', async () => {
    agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir, userCapacity: 2 });
    onTestFailed(() => console.log(agent?.logs().slice(-3000)));
    const sent = [300_000, 400_000, 500_000];
    const replies = [100_000, 200_000, 300_000];
    const received = await Promise.all(
      bed.users.map((u, i) => sinkTraffic(u, { host: bed.net.peerV4, port: bed.sink.port, send: sent[i]!, reply: replies[i]!, ms: 1000 })),
    );
    expect(received).toEqual(replies);

    // three users, two slots (other processes of the host may hold them too): at least
    // one test user has none and is booked nowhere per user
    const booked = await waitFor('the slotted users booked', () => {
      const users = json<UsersResult>(['users', '--since', '1h']).users;
      const mine = bed.users.filter((u) => users.some((r) => r.uid === u.uid));
      return mine.length < bed.users.length ? mine : undefined;
    });
    const beyond = bed.users.map((u, i) => ({ u, i })).filter(({ u }) => !booked.includes(u));
    expect(beyond.length).toBeGreaterThanOrEqual(1);

    const status = await waitFor('their traffic in ubia status', () => {
      const s = json<StatusResult>(['status']);
      const b = s.meter.health.beyondUserTable;
      return b.txPayloadBytes >= beyond.reduce((n, { i }) => n + sent[i]!, 0) ? s : undefined;
    });
    const h = status.meter.health;
    console.log('beyond the user table:', JSON.stringify(h.beyondUserTable), 'overflows', h.overflows.users, 'test users without a slot', beyond.length);
    expect(h.overflows.users).toBeGreaterThan(0);
    // each of them sent and received its payload exactly; other processes of the host
    // beyond the table may add to the figures, never take from them
    expect(h.beyondUserTable.rxPayloadBytes).toBeGreaterThanOrEqual(beyond.reduce((n, { i }) => n + replies[i]!, 0));
    // on the wire: the payload plus IP and TCP headers, in the unattributed figures too
    expect(h.beyondUserTable.txBytes).toBeGreaterThan(h.beyondUserTable.txPayloadBytes);
    expect(h.beyondUserTable.rxBytes).toBeGreaterThan(h.beyondUserTable.rxPayloadBytes);
    expect(h.beyondUserTable.txPackets).toBeGreaterThan(0);

    const text = cli(agent.socket, ['status']).stdout;
    expect(text).toMatch(/users beyond the user table \(booked as unattributed\): in \S+ \S+ \(payload \S+ \S+\), out \S+ \S+ \(payload \S+ \S+\)/);
  });
});
