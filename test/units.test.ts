// Usage per workload with the real agent on the real kernel: the exact cgroup v2 layout
// Slurm's cgroup/v2 plugin makes (…/slurmstepd.scope/job_<id>/step_<step>/user/task_<n>),
// built by hand in a test-owned subtree of the cgroup2 hierarchy with a test user's
// processes started in it. Two concurrent jobs of one user get separate, exact totals
// that sum to the user's; a process moved to another job's cgroup mid-transfer (after a
// poll) books each part where it was; another user sees none of it.
import { mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cgroup2Mount } from '../src/kernel/cgroups.js';
import type { UnitRow, UnitsResult, UsersResult } from '../src/control/protocol.js';
import { cli, startAgent, type AgentProcess } from './support/agent.js';
import { createTestbed, freePort, type Testbed, type TestUser } from './support/testbed.js';
import { serveTraffic, sinkTraffic } from './support/traffic.js';
import { waitFor } from './support/wait.js';

const COUNTERS = ['rxBytes', 'txBytes', 'rxPackets', 'txPackets', 'rxPayloadBytes', 'txPayloadBytes'] as const;
/** sink-client sends the size of the reply it wants (8 bytes) before its data */
const HEADER = 8;

let bed: Testbed;
let agent: AgentProcess;
let alice: TestUser;
let bob: TestUser;
const root = cgroup2Mount();
const base = join(root ?? '/nonexistent', `ubia-units-test-${process.pid}`);
const stepd = join(base, 'system.slice', 'slurmstepd.scope');
const made: string[] = [];

/** A Slurm task cgroup (…/job_<job>/step_<step>/user/task_0), made with its parents
 *  (each noted in `made`, for the clean-up). */
function taskCgroup(job: number, step: string): string {
  const dir = join(stepd, `job_${job}`, `step_${step}`, 'user', 'task_0');
  let at = '';
  for (const part of dir.split('/').slice(1)) {
    at = `${at}/${part}`;
    if (at.length > root!.length) {
      try {
        mkdirSync(at);
        made.push(at);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
  }
  return dir;
}

const json = <T>(args: string[], as?: TestUser): T => {
  const r = cli(agent.socket, [...args, '--json'], as);
  if (r.code !== 0) throw new Error(`ubia ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
};
const unitsOf = (user: TestUser, by = 'unit'): UnitRow[] => json<UnitsResult>(['units', '--by', by, '-u', user.name]).units;
const userRow = (user: TestUser) => json<UsersResult>(['users']).users.find((u) => u.uid === user.uid);
const unitRow = (user: TestUser, unit: string, by = 'unit') => unitsOf(user, by).find((u) => u.unit === unit);

/** The user's units once they sum to the user's `ubia users` row in every counter (the
 *  two replies come from two requests: a poll may fall between them). */
async function unitsSummingToUser(user: TestUser, check: (units: UnitRow[]) => boolean): Promise<UnitRow[]> {
  return waitFor(`${user.name}'s units to sum to their total`, () => {
    const units = unitsOf(user);
    const total = userRow(user);
    if (!total || !check(units)) return false;
    return COUNTERS.every((k) => units.reduce((a, u) => a + u[k], 0) === total[k]) ? units : false;
  });
}

beforeAll(async () => {
  expect(root, 'cgroup2 is mounted').not.toBeNull();
  bed = await createTestbed('units', { users: 2, sinkPort: 9000 });
  [alice, bob] = bed.users as [TestUser, TestUser];
  agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
});

afterAll(async () => {
  await agent?.stop();
  await bed?.remove();
  for (const dir of made.reverse()) rmdirSync(dir); // children first; their processes have exited
});

describe('usage per workload (Slurm cgroup/v2 layout)', () => {
  it('two concurrent jobs of one user: separate exact totals, summing to the user', async () => {
    const host = bed.net.peerV4;
    const [a, b] = await Promise.all([
      sinkTraffic(alice, { host, port: bed.sink.port, send: 1_200_000, reply: 300_000, ms: 800, cgroup: taskCgroup(1001, '0') }),
      sinkTraffic(alice, { host, port: bed.sink.port, send: 700_000, reply: 2_000_000, ms: 800, cgroup: taskCgroup(1002, 'batch') }),
    ]);
    expect([a, b]).toEqual([300_000, 2_000_000]);
    const units = await unitsSummingToUser(alice, (us) => us.some((u) => u.unit === 'job_1002/step_batch' && u.rxPayloadBytes === 2_000_000));
    const step0 = units.find((u) => u.unit === 'job_1001/step_0')!;
    const batch = units.find((u) => u.unit === 'job_1002/step_batch')!;
    expect([step0.txPayloadBytes, step0.rxPayloadBytes]).toEqual([1_200_000 + HEADER, 300_000]);
    expect([batch.txPayloadBytes, batch.rxPayloadBytes]).toEqual([700_000 + HEADER, 2_000_000]);
    expect(step0).toMatchObject({ kind: 'step', jobId: '1001', cgroupPaths: [`/ubia-units-test-${process.pid}/system.slice/slurmstepd.scope/job_1001/step_0/user/task_0`] });
    expect(units.map((u) => u.unit).sort()).toEqual(['job_1001/step_0', 'job_1002/step_batch']);
    const table = cli(agent.socket, ['units', '--since', '1h']).stdout;
    expect(table).toMatch(new RegExp(`${alice.name}\\s+job_1001/step_0\\s+step\\s`));
    // per job: the steps together
    expect(unitsOf(alice, 'job').map((u) => [u.unit, u.kind, u.txPayloadBytes]).sort()).toEqual([
      ['job_1001', 'job', 1_200_000 + HEADER],
      ['job_1002', 'job', 700_000 + HEADER],
    ]);
  });

  it('a user sees the units of their own sockets only', () => {
    const own = json<UnitsResult>(['units'], alice).units;
    expect(own.length).toBeGreaterThan(0);
    expect(own.every((u) => u.uid === alice.uid)).toBe(true);
    expect(json<UnitsResult>(['units'], bob).units).toEqual([]);
    const r = cli(agent.socket, ['units', '-u', alice.name], bob);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/only your own/);
  });

  it('a process moved to another job mid-transfer (after a poll): each part in its unit, the sum exact', async () => {
    const port = await freePort();
    const sink = serveTraffic(['tcp-sink', bed.net.peerV4, String(port)], { net: bed.net });
    await sink.ready;
    const client = serveTraffic(['tcp-send-on-signal', bed.net.peerV4, String(port), '1000000', '2500000'], { user: alice, cgroup: taskCgroup(1003, '0') });
    await client.ready;
    // a poll has booked the first part to job 1003
    await waitFor('the first part in job_1003/step_0', () => unitRow(alice, 'job_1003/step_0')?.txPayloadBytes === 1_000_000);
    writeFileSync(join(taskCgroup(1004, '0'), 'cgroup.procs'), String(client.proc.pid));
    client.proc.kill('SIGUSR1');
    expect((await client.done).sent).toBe(3_500_000);
    expect((await sink.done).received).toBe(3_500_000);
    const units = await unitsSummingToUser(alice, (us) => us.some((u) => u.unit === 'job_1004/step_0' && u.txPayloadBytes === 2_500_000));
    expect(units.find((u) => u.unit === 'job_1003/step_0')!.txPayloadBytes).toBe(1_000_000);
    expect(units.find((u) => u.unit === 'job_1004/step_0')!.txPayloadBytes).toBe(2_500_000);
  });
});
