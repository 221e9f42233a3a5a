// Diameter sessions per Slurm job through the whole chain on the real kernel: one test
// user runs two concurrent jobs (the cgroup/v2 layout Slurm's plugin makes, built by hand:
// test/support/cgroups.ts) and some traffic outside any job, to a netns over veth; the
// real agent (dist/, eBPF meter, [diameter] session_per = "job") sends each job's START,
// INTERIMs and, once Slurm would have removed the job's cgroup, its STOP to freeDiameter,
// whose app_acct stores them in PostgreSQL. Each job's STOP must equal `ubia units --by
// job` for that job, the user's own session the traffic outside jobs, and all of the
// user's sessions together `ubia users`.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import type { UnitRow, UnitsResult, UsersResult } from '../src/control/protocol.js';
import { RecordType, TerminationCause } from '../src/export/diameter/dictionary.js';
import { cli, startAgent, type AgentProcess } from './support/agent.js';
import { slurmCgroups, type SlurmCgroups } from './support/cgroups.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { waitFor } from './support/wait.js';
import { jobIdsReceived, REALM, startFreeDiameter, startPostgres, type AcctRow, type FreeDiameter, type Postgres } from './peers/freediameter/harness.js';
import { bySession, dedupeChecked, expectWellFormedSession } from './peers/freediameter/checks.js';

const ORIGIN_HOST = `agent.${REALM}`;
const WIRE = ['txBytes', 'rxBytes', 'txPackets', 'rxPackets'] as const;
/** sink-client sends the size of the reply it wants (8 bytes) before its data */
const HEADER = 8;
const JOB_A = 7101;
const JOB_B = 7102;

let pg: Postgres;
let fd: FreeDiameter;
let bed: Testbed;
let alice: TestUser;
let slurm: SlurmCgroups;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  pg = await startPostgres();
  fd = await startFreeDiameter({ pg, dumpMessages: true });
  bed = await createTestbed('djob', { users: 1, sinkPort: 9000 });
  [alice] = bed.users as [TestUser];
  slurm = slurmCgroups(`ubia-diameter-jobs-agent-${process.pid}`);
});

afterAll(async () => {
  await agent?.kill();
  slurm?.dispose();
  await bed?.remove();
  await fd?.close();
  await pg?.stop();
});

const json = <T>(args: string[]): T => {
  const r = cli(agent!.socket, [...args, '--json']);
  if (r.code !== 0) throw new Error(`ubia ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
};
const jobsOf = (u: TestUser): UnitRow[] => json<UnitsResult>(['units', '--by', 'job', '-u', u.name]).units;
const userRow = (u: TestUser) => json<UsersResult>(['users']).users.find((r) => r.uid === u.uid);
/** A session's final counters as the ledger's wire counters: input is what the user sent
 *  (RFC 7155 §4.4.1). */
const wireOf = (r: AcctRow) => ({ txBytes: r.inputOctets, rxBytes: r.outputOctets, txPackets: r.inputPackets, rxPackets: r.outputPackets });
const pick = (c: Record<(typeof WIRE)[number], number>) => Object.fromEntries(WIRE.map((k) => [k, c[k]]));
const sessionOf = (sessions: Map<string, AcctRow[]>, suffix: string) => [...sessions].filter(([id]) => id.endsWith(suffix));
const stopsOfJob = (job: number) =>
  pg.rows().filter((r) => r.recordType === RecordType.Stop && r.sessionId.endsWith(`;ubia-${alice.uid}-job-${job}`));

describe('real agent, session_per = "job" → freeDiameter', () => {
  it('two concurrent jobs of one user: a session each with the job id, STOP once the job\'s cgroup is gone, sums equal to `ubia units --by job`', async () => {
    pg.sql('TRUNCATE incoming');
    agent = await startAgent({
      dir: bed.dir,
      pinDir: bed.pinDir,
      extra: `
[diameter]
origin_host = "${ORIGIN_HOST}"
origin_realm = "${REALM}"
destination_realm = "${REALM}"
interim_interval = 1
idle_timeout = 300
session_per = "job"
servers = [ { host = "127.0.0.1", port = ${fd.port} } ]
`,
    });
    onTestFailed(() => console.log(agent?.logs().slice(-4000), fd.log().slice(-3000)));
    await waitFor('the Diameter peer open', () => (json<{ exporters: { name: string; state: string }[] }>(['status']).exporters.find((e) => e.name === 'diameter')?.state === 'ok' ? true : undefined));

    // both jobs at once, and alice's traffic outside any job (the test's own cgroup)
    const host = bed.net.peerV4;
    const t: Record<number | 'outside', { send: number; reply: number }> = {
      [JOB_A]: { send: 1_500_000, reply: 300_000 },
      [JOB_B]: { send: 400_000, reply: 2_000_000 },
      outside: { send: 250_000, reply: 600_000 },
    };
    const received = await Promise.all([
      sinkTraffic(alice, { host, port: bed.sink.port, ...t[JOB_A], ms: 2500, cgroup: slurm.step(JOB_A, '0').dir }),
      sinkTraffic(alice, { host, port: bed.sink.port, ...t[JOB_B], ms: 2500, cgroup: slurm.step(JOB_B, 'batch').dir }),
      sinkTraffic(alice, { host: bed.net.peerV6, port: bed.sink.port, ...t.outside, ms: 2500 }),
    ]);
    expect(received).toEqual([t[JOB_A].reply, t[JOB_B].reply, t.outside.reply]);

    // the ledger's view once everything is booked: each job's payload exact, the units
    // summing to the user's row in every counter
    const { jobs, user } = await waitFor('both jobs booked and the units summing to the user', () => {
      const units = jobsOf(alice);
      const total = userRow(alice);
      const job = (id: number) => units.find((u) => u.jobId === String(id));
      const done =
        total &&
        [JOB_A, JOB_B].every((id) => job(id)?.txPayloadBytes === t[id]!.send + HEADER && job(id)?.rxPayloadBytes === t[id]!.reply) &&
        WIRE.every((k) => units.reduce((a, u) => a + u[k], 0) === total[k]);
      return done ? { jobs: new Map([JOB_A, JOB_B].map((id) => [id, job(id)!])), user: total } : undefined;
    });
    expect(jobs.get(JOB_A)).toMatchObject({ unit: `job_${JOB_A}`, kind: 'job' });

    // Slurm ends job A: its processes are gone, it removes the job's cgroup
    expect(stopsOfJob(JOB_A)).toEqual([]);
    const endedAt = Date.now();
    slurm.endJob(JOB_A);
    await waitFor(`the STOP of job ${JOB_A}`, () => (stopsOfJob(JOB_A).length > 0 ? true : undefined), 10_000);
    const stopLatencyMs = Date.now() - endedAt;
    // job B still runs: its session goes on
    expect(stopsOfJob(JOB_B)).toEqual([]);
    // then job B ends too
    slurm.endJob(JOB_B);
    await waitFor(`the STOP of job ${JOB_B}`, () => (stopsOfJob(JOB_B).length > 0 ? true : undefined), 10_000);
    // the agent stops: the user's own session STOPs (ADMINISTRATIVE)
    expect(await agent.stop()).toBe(0);

    const mine = pg.rows().filter((r) => r.sessionId.includes(`;ubia-${alice.uid}`));
    const sessions = bySession(dedupeChecked(mine, fd.receivedAcrs().filter((r) => r.sessionId.includes(`;ubia-${alice.uid}`))));
    // one session per job and one for the traffic outside jobs, nothing else
    expect([...sessions.keys()].map((id) => id.replace(/^.*;/, '')).sort()).toEqual(
      [`ubia-${alice.uid}`, `ubia-${alice.uid}-job-${JOB_A}`, `ubia-${alice.uid}-job-${JOB_B}`].sort(),
    );
    const sum = { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 };
    for (const job of [JOB_A, JOB_B]) {
      const [[sessionId, rows]] = sessionOf(sessions, `;ubia-${alice.uid}-job-${job}`) as [[string, AcctRow[]]];
      expect(sessionId).toMatch(new RegExp(`^${ORIGIN_HOST.replace(/\./g, '\\.')};\\d+;\\d+;ubia-${alice.uid}-job-${job}$`));
      expectWellFormedSession(rows); // START … INTERIMs … STOP
      for (const r of rows) expect(r.userName).toBe(alice.name);
      const stop = rows.at(-1)!;
      expect(stop.terminationCause).toBe(TerminationCause.Logout); // the job ended
      expect(wireOf(stop)).toEqual(pick(jobs.get(job)!));
      for (const k of WIRE) sum[k] += wireOf(stop)[k];
      // every record names its job in Ubia-Job-Id, as freeDiameter received it
      expect(jobIdsReceived(fd.log(), sessionId)).toEqual(rows.map(() => String(job)));
    }
    expect(stopLatencyMs).toBeLessThan(3000);
    const [[userSessionId, userRows]] = sessionOf(sessions, `;ubia-${alice.uid}`) as [[string, AcctRow[]]];
    expectWellFormedSession(userRows);
    expect(userRows.at(-1)!.terminationCause).toBe(TerminationCause.Administrative);
    expect(jobIdsReceived(fd.log(), userSessionId).every((id) => id === '')).toBe(true);
    // the user's session holds only the traffic outside jobs: all sessions sum to `ubia users`
    const outside = wireOf(userRows.at(-1)!);
    expect(outside.txBytes).toBeGreaterThan(t.outside.send);
    expect(outside.rxBytes).toBeGreaterThan(t.outside.reply);
    expect(outside.txBytes).toBeLessThan(t[JOB_B].send);
    for (const k of WIRE) sum[k] += outside[k];
    expect(sum).toEqual(pick(user));
    agent = undefined;
  });
});
