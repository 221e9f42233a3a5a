// `ubia report` with the real agent and test users' traffic: over one fixed range, each
// user's report total is exactly the `ubia users` figure (all six counters), and every
// breakdown's rows — by hour, day, process, remote network, port — add up to it exactly;
// the flow store's rows carry the traffic the users sent; by unit (part of alice's traffic
// runs in a Slurm step's cgroup) the rows are the ledger's own and need no `unrecorded`.
// The range printed is the range summed: `--since 0s` shows the whole minute it lists.
// A user who is not an admin gets only their own report. Bare dates follow the host's
// time zone (TZ) in `users` too.
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import type { ReportResult, UsersResult } from '../src/control/protocol.js';
import type { TrafficCounters } from '../src/core/counters.js';
import { addressToBigInt, bigIntToAddress, prefixMask } from '../src/history/address.js';
import { CLI, cli, startAgent } from './support/agent.js';
import { slurmCgroups, type SlurmCgroups } from './support/cgroups.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { sleep, waitFor } from './support/wait.js';

const SINK_PORT = 9107;
const HISTORY = '\n[history]\nenabled = true\nflush_interval = 1\nactive_timeout = 1\nidle_timeout = 1\n';
const COUNTERS = ['rxBytes', 'txBytes', 'rxPackets', 'txPackets', 'rxPayloadBytes', 'txPayloadBytes'] as const;
const figures = (c: TrafficCounters) => Object.fromEntries(COUNTERS.map((k) => [k, c[k]]));
const JOB = 7101;
const sum = (rows: TrafficCounters[]) => Object.fromEntries(COUNTERS.map((k) => [k, rows.reduce((a, r) => a + r[k], 0)]));

function json<T>(socket: string, args: string[], as?: TestUser): T {
  const r = cli(socket, [...args, '--json'], as);
  if (r.code !== 0) throw new Error(`ubia ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

describe('ubia report with the real agent', () => {
  let bed: Testbed | undefined;
  let slurm: SlurmCgroups | undefined;
  afterAll(async () => {
    slurm?.dispose();
    await bed?.remove();
  });

  it("breakdowns add up exactly to `ubia users` over the same range, with test users' traffic", async () => {
    bed = await createTestbed('report', { users: 2, sinkPort: SINK_PORT });
    const { dir, pinDir, net, sink } = bed;
    const [alice, bob] = bed.users as [TestUser, TestUser];
    slurm = slurmCgroups(`ubia-report-test-${process.pid}`);
    const step = slurm.step(JOB);
    const agent = await startAgent({ dir, pinDir, extra: HISTORY });
    try {
      // `--since 0s` (an empty range) lists the minute it falls in: a little traffic of
      // alice's early enough in a minute to be listed before it ends
      if (Date.now() % 60_000 > 40_000) await sleep(60_000 - (Date.now() % 60_000) + 500);
      const fromMs = Date.now() - 60_000;
      await sinkTraffic(alice, { host: net.peerV4, port: sink.port, send: 20_000, reply: 5_000, ms: 300 });
      await waitFor("alice's traffic in the counted range of `--since 0s`, the same as summing that range", () => {
        const now = json<UsersResult>(agent.socket, ['users', '--since', '0s']);
        const hers = now.users.find((u) => u.uid === alice.uid);
        if (!hers || hers.txPayloadBytes < 20_008) return undefined;
        const [counted, asked] = [[now.countedFrom, now.countedTo], [now.from, now.to]].map((r) => r.map((t) => Date.parse(t)));
        expect(asked[0]).toBe(asked[1]);
        expect(counted[1]! - counted[0]!).toBe(60_000);
        expect(counted[0]! <= asked[0]! && asked[1]! < counted[1]!).toBe(true);
        const summed = json<UsersResult>(agent.socket, ['users', '--from', now.countedFrom, '--to', now.countedTo]);
        expect(summed).toMatchObject({ countedFrom: now.countedFrom, countedTo: now.countedTo });
        // equal unless a late poll booked her last packets in between: then once more
        return JSON.stringify(figures(summed.users.find((u) => u.uid === alice.uid)!)) === JSON.stringify(figures(hers)) ? true : undefined;
      }, 15_000, 500);
      const table = cli(agent.socket, ['users', '--since', '0s']).stdout;
      const [, printedFrom, printedTo] = /^usage from (\S+) to (\S+) \(the whole ledger buckets holding (\S+) to \3\)/.exec(table) ?? [];
      expect(Date.parse(printedTo!) - Date.parse(printedFrom!), table).toBe(60_000);

      await Promise.all([
        sinkTraffic(alice, { host: net.peerV4, port: sink.port, send: 300_000, reply: 50_000, ms: 300, cgroup: step.dir }),
        sinkTraffic(bob, { host: net.peerV6, port: sink.port, send: 20_000, reply: 400_000, ms: 300 }),
      ]);
      let seen: ReportResult | undefined;
      await waitFor("both users' flows in the store", () => {
        const r = (seen = json<ReportResult>(agent.socket, ['report', '--by', 'port', '--since', '10m']));
        return [alice, bob].every((u) => r.users.find((x) => x.uid === u.uid)?.rows.some((row) => row.key.port === SINK_PORT && row.rxBytes + row.txBytes > 0)) ? true : undefined;
      }, 30_000, 500).catch((e: Error) => {
        throw new Error(`${e.message}; last seen: ${JSON.stringify(seen)}`);
      });
      // a range that ends at a minute boundary already past: no later poll books into it,
      // so `users` and `report` read the very same buckets whenever they run
      const boundary = Math.ceil(Date.now() / 60_000) * 60_000;
      await sleep(boundary - Date.now() + 3_000);
      const range = ['--from', new Date(fromMs).toISOString(), '--to', new Date(boundary).toISOString()];

      const users = json<UsersResult>(agent.socket, ['users', ...range]);
      const totals = new Map(users.users.map((u) => [u.uid, figures(u)]));
      for (const u of [alice, bob]) expect(totals.get(u.uid)?.txPayloadBytes ?? 0).toBeGreaterThanOrEqual(u === alice ? 320_016 : 20_008);
      for (const by of ['user', 'hour', 'day', 'process', 'remote', 'port', 'unit']) {
        const r = json<ReportResult>(agent.socket, ['report', '--by', by, ...range]);
        expect(r.users.map((u) => [u.uid, figures(u)]), `report --by ${by}: the users' totals`).toEqual(users.users.map((u) => [u.uid, figures(u)]));
        expect(r.unattributed).toEqual(users.unattributed);
        for (const u of r.users) {
          if (by === 'user') expect(u.rows).toEqual([]);
          else expect(sum(u.rows), `report --by ${by}: ${u.user}'s rows`).toEqual(figures(u));
        }
      }

      // by unit: alice's Slurm step holds exactly what she sent in it, her other traffic is
      // another unit, and the ledger's rows alone make her total
      const units = json<ReportResult>(agent.socket, ['report', '--by', 'unit', ...range]);
      const aliceUnits = units.users.find((u) => u.uid === alice.uid)!.rows;
      expect(aliceUnits.every((r) => r.note === undefined), JSON.stringify(aliceUnits)).toBe(true);
      expect(aliceUnits.length).toBeGreaterThanOrEqual(2);
      expect(aliceUnits.find((r) => r.key.unit === `job_${JOB}/step_0`)).toMatchObject({ txPayloadBytes: 300_008, rxPayloadBytes: 50_000 });
      expect(sum(aliceUnits)).toEqual(totals.get(alice.uid));
      expect([Date.parse(units.countedFrom), Date.parse(units.countedTo)]).toEqual([fromMs - (fromMs % 60_000), boundary]);

      // the flow store's rows are the users' own traffic, to where it went
      const remote = json<ReportResult>(agent.socket, ['report', '--by', 'remote', ...range]);
      const net24 = `${net.peerV4.replace(/\.\d+$/, '.0')}/24`;
      const net64 = `${bigIntToAddress(addressToBigInt(net.peerV6)! & prefixMask(64))}/64`;
      // (at most what was sent: until the meter's ended-flow record carries the whole flow
      // (wip/land), a flow's record may hold only its tail, even no payload sent;
      // `unrecorded` has the rest)
      const aliceRemote = remote.users.find((u) => u.uid === alice.uid)!.rows.find((r) => r.key.network === net24)!;
      expect(aliceRemote.rxBytes + aliceRemote.txBytes).toBeGreaterThan(0);
      expect(aliceRemote.txPayloadBytes).toBeLessThanOrEqual(320_016); // both her sends
      const bobRemote = remote.users.find((u) => u.uid === bob.uid)!.rows.find((r) => r.key.network === net64)!;
      expect(bobRemote.rxBytes + bobRemote.txBytes).toBeGreaterThan(0);
      expect(bobRemote.txPayloadBytes).toBeLessThanOrEqual(20_008);
      const processes = json<ReportResult>(agent.socket, ['report', '--by', 'process', '--top', '1', ...range]);
      const [top, ...rest] = processes.users.find((u) => u.uid === alice.uid)!.rows;
      expect(top!.key.comm).toMatch(/python/);
      // every flow of hers to that network is the traffic program's (two runs of it: one
      // row, or two where one had exited when its flow was recorded: `exe` null)
      const byProcess = json<ReportResult>(agent.socket, ['report', '--by', 'process', ...range]).users.find((u) => u.uid === alice.uid)!.rows;
      expect(sum(byProcess.filter((r) => /python/.test(String(r.key.comm)))).txPayloadBytes).toBeGreaterThanOrEqual(aliceRemote.txPayloadBytes);
      expect(rest.every((r) => r.note !== undefined)).toBe(true);

      // the text table and CSV say the same
      const csv = cli(agent.socket, ['report', '--by', 'port', '--csv', ...range]);
      expect(csv.stdout.split('\n')[0]).toBe('uid,user,proto,port,note,rxBytes,txBytes,rxPackets,txPackets,rxPayloadBytes,txPayloadBytes');
      expect(csv.stdout).toContain(`${alice.uid},${alice.name},tcp,${SINK_PORT},,`);
      const text = cli(agent.socket, ['report', '--by', 'day', ...range]);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(new RegExp(`^${alice.name} +total `, 'm'));

      // a user who is not an admin: their own report only
      const own = json<ReportResult>(agent.socket, ['report', '--by', 'process', ...range], bob);
      expect(own.users.map((u) => u.uid)).toEqual([bob.uid]);
      expect(own.users[0]).toMatchObject(figures(users.users.find((u) => u.uid === bob.uid)!));
      expect(own.unattributed).toBeNull();
      const ownUnits = json<ReportResult>(agent.socket, ['report', '--by', 'unit', ...range], bob);
      expect(ownUnits.users.map((u) => u.uid)).toEqual([bob.uid]);
      expect(sum(ownUnits.users[0]!.rows)).toEqual(totals.get(bob.uid));
      const denied = cli(agent.socket, ['report', '--user', alice.name, ...range], bob);
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/you can see only your own usage/);

      // a bare date is local midnight of the host's time zone, in users and report alike
      for (const [tz, midnight] of [['Asia/Kolkata', '2026-11-26T18:30:00.000Z'], ['America/New_York', '2026-11-27T05:00:00.000Z'], ['Europe/Berlin', '2026-03-28T23:00:00.000Z']] as const) {
        const day = tz === 'Europe/Berlin' ? '2026-03-29' : '2026-11-27';
        const run = spawnSync(process.execPath, [CLI, '--socket', agent.socket, 'users', '--from', day, '--to', `${day}T12:00`, '--json'], { encoding: 'utf8', env: { ...process.env, TZ: tz } });
        expect(run.status, run.stderr).toBe(0);
        expect((JSON.parse(run.stdout) as UsersResult).from).toBe(midnight);
      }
      const daily = spawnSync(process.execPath, [CLI, '--socket', agent.socket, 'report', '--by', 'hour', '--from', '2026-03-29', '--to', '2026-03-30', '--json'], { encoding: 'utf8', env: { ...process.env, TZ: 'Europe/Berlin' } });
      expect(daily.status, daily.stderr).toBe(0);
      expect((JSON.parse(daily.stdout) as { from: string }).from).toBe('2026-03-29T00:00:00+01:00');
    } finally {
      await agent.stop();
    }
  }, 180_000);
});
