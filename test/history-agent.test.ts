// The flow store with the real agent: test users' TCP traffic into a netns sink is kept
// as flow records, survives an agent restart, and `ubia flows` groups it right; a user
// who is not an admin sees only their own flows.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { FlowQueryResult } from '../src/control/protocol.js';
import { addressToBigInt, bigIntToAddress } from '../src/history/address.js';
import { cli, startAgent } from './support/agent.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { waitFor } from './support/wait.js';

const SINK_PORT = 9100;
const HISTORY = '\n[history]\nenabled = true\nflush_interval = 1\nactive_timeout = 1\nidle_timeout = 1\n';

type Group = Record<string, string | number | null>;
const query = (socket: string, args: string[], as?: TestUser): FlowQueryResult => {
  const r = cli(socket, ['flows', '--since', '1h', '--json', ...args], as);
  if (r.code !== 0) throw new Error(`ubia flows failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as FlowQueryResult;
};
const byUser = (rows: Group[], user: string) => rows.find((r) => r.user === user);

describe('flow history with the real agent', () => {
  let bed: Testbed | undefined;
  afterAll(async () => {
    await bed?.remove();
  });

  it('keeps test users\' flows across a restart and groups them by user and remote port', async () => {
    bed = await createTestbed('history', { users: 2, sinkPort: SINK_PORT });
    const { dir, pinDir, net, sink } = bed;
    const [alice, bob] = bed.users as [TestUser, TestUser];
    let agent = await startAgent({ dir, pinDir, extra: HISTORY });
    try {
      await Promise.all([
        sinkTraffic(alice, { host: net.peerV4, port: sink.port, send: 300_000, reply: 50_000, ms: 300 }),
        sinkTraffic(bob, { host: net.peerV6, port: sink.port, send: 20_000, reply: 400_000, ms: 300 }),
      ]);
      const grouped = ['--remotes', '--group-by', 'user,remote_port', '--where', `dst port ${SINK_PORT} and tcp`];
      // the payload sent is exactly what the process wrote (+ the 8-byte reply-size
      // header); what it received is on the wire, payload plus IP and TCP headers (the
      // payload read at the very end of a flow may be short in the close event's
      // snapshot, the users' totals have it: not asserted exactly here)
      const expected = [[alice, 300_008, 50_000], [bob, 20_008, 400_000]] as const;
      let seen: Group[] = [];
      const whole = (rows: Group[]) =>
        expected.every(([u, tx, rx]) => byUser(rows, u.name)?.tx_payload === tx && (byUser(rows, u.name)?.rx_bytes as number) > rx);
      const before = await waitFor('both users\' whole flows in the store', () => {
        const rows = (seen = query(agent.socket, grouped).rows);
        return whole(rows) ? rows : undefined;
      }).catch((e: Error) => {
        throw new Error(`${e.message}; last seen: ${JSON.stringify(seen)}`);
      });
      expect(before).toHaveLength(2);
      for (const [u, sent] of expected) {
        const g = byUser(before, u.name)!;
        expect(g).toMatchObject({ remote_port: SINK_PORT, remotes: 1 });
        expect(g.tx_bytes as number).toBeGreaterThan(sent);
      }
      const store = join(dir, 'flows');
      expect(statSync(store).mode & 0o777).toBe(0o700);
      expect(statSync(join(store, 'flows.duckdb')).mode & 0o777).toBe(0o600);

      expect(await agent.stop()).toBe(0);
      agent = await startAgent({ dir, pinDir, extra: HISTORY });
      const after = query(agent.socket, grouped).rows;
      expect(after).toEqual(before);

      // more traffic after the restart adds to what survived
      await sinkTraffic(alice, { host: net.peerV4, port: sink.port, send: 100_000, reply: 1000, ms: 200 });
      const more = await waitFor('alice\'s new flow in the store', () => {
        const g = byUser(query(agent.socket, grouped).rows, alice.name);
        return g && g.tx_payload === 300_008 + 100_008 ? g : undefined;
      });
      expect(more.flows as number).toBeGreaterThan(byUser(before, alice.name)!.flows as number);

      // the filter, the group filter and the network grouping
      const nets = query(agent.socket, ['--where', `dst net ${net.peerV4}/32 or dst net ${net.peerV6}/128`, '--group-by', 'remote/24/64', '--having', 'bytes > 100k', '--order', '-rx_bytes']).rows;
      // bob received 400 kB from the v6 peer, alice 51 kB from the v4 one (wire bytes: an
      // ended flow's received payload can miss the last reads, see README known limits)
      // (addresses come back in RFC 5952 form: the testbed's "2001:db8:03a4::" is "2001:db8:3a4::")
      const canonical = (a: string) => bigIntToAddress(addressToBigInt(a)!);
      expect(nets.map((r) => r['remote/24/64'])).toEqual([canonical(net.peerV6.replace(/::2$/, '::')), net.peerV4.replace(/\.\d+$/, '.0')]);

      // a user who is not an admin: only their own flows, whatever they ask for
      const own = query(agent.socket, ['--group-by', 'user'], bob).rows;
      expect(own.map((r) => r.user)).toEqual([bob.name]);
      const records = query(agent.socket, ['--where', `user ${alice.name}`], bob).rows;
      expect(records).toEqual([]);

      // errors point at the token
      const bad = cli(agent.socket, ['flows', '--since', '1h', '--where', 'port 5x']);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('--where: port: expected a number at column 6');
    } finally {
      await agent.stop();
    }
  }, 120_000);
});
