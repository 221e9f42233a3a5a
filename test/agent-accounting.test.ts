// Accounting over scripted kernel snapshots: which scope counts, what reaches the ledger
// and the exporters, process rates, the flow-read cadence, and exited processes being
// forgotten only after their final read.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Accounting } from '../src/agent/accounting.js';
import { decodeCheckpoint } from '../src/agent/checkpoint.js';
import { zeroCounters } from '../src/core/counters.js';
import { DEFAULT_WORKLOAD_RULES, workloadNamer } from '../src/core/workload.js';
import type { MeterReader } from '../src/agent/meter.js';
import { createNameCache } from '../src/agent/names.js';
import type { Columns } from '../src/kernel/native.js';
import { Ledger, UNATTRIBUTED_UID } from '../src/ledger/ledger.js';
import type { FlowRecord, InterfaceCounters, ProcessCounters, Scope, UserCounters } from '../src/kernel/types.js';

const c = (n: number) => ({ rxBytes: 100 * n, txBytes: 10 * n, rxPackets: n, txPackets: n, rxPayloadBytes: 50 * n, txPayloadBytes: 5 * n });

/** Rows as the addon hands tables over: a typed column per number field, strings
 *  dictionary-encoded. */
function columns<T extends object>(list: T[]): Columns<T> {
  const out: Record<string, unknown> = { length: list.length };
  for (const key of Object.keys(list[0] ?? {})) {
    const values = list.map((r) => (r as Record<string, unknown>)[key]);
    if (typeof values[0] !== 'string') out[key] = values;
    else {
      const distinct = [...new Set(values as string[])];
      out[key] = { codes: Uint32Array.from(values as string[], (v) => distinct.indexOf(v)), values: distinct };
    }
  }
  return out as Columns<T>;
}

/** A meter whose next readings the test sets; it records what the agent asked of it. */
function scriptedMeter() {
  const state = {
    users: [] as UserCounters[],
    processes: [] as ProcessCounters[],
    flows: [] as FlowRecord[],
    interfaces: [] as InterfaceCounters[],
    flowReads: 0,
    processReads: 0,
    folds: 0,
    eventsDropped: 0,
    forgotten: [] as number[],
  };
  const meter: MeterReader = {
    status: () => ({ kernelRelease: 'test', mode: 'default', hooks: [], pinDir: '', resumed: false, flowCapacity: 1024 }),
    checkPins: () => [],
    fold: () => void state.folds++,
    readUserColumns: () => columns(state.users),
    readProcessColumns: () => {
      state.processReads++;
      return columns(state.processes);
    },
    readFlowColumns: () => {
      state.flowReads++;
      return columns(state.flows);
    },
    readInterfaces: () => state.interfaces,
    health: () => ({ overflows: { users: 0, processes: 0, flows: 0, interfaces: 0 }, eventsDropped: state.eventsDropped, beyondUserTable: zeroCounters() }),
    onEvent: () => undefined,
    forgetProcess: (pid) => state.forgotten.push(pid),
    close: () => undefined,
  };
  return { meter, state };
}

const user = (uid: number, scope: Scope, n: number): UserCounters => ({ uid, scope, ...c(n) });
const proc = (pid: number, uid: number, n: number, scope: Scope = 'external', cgroupId = 1): ProcessCounters => ({ pid, uid, comm: `p${pid}`, scope, cgroupId, ...c(n) });
const flow = (cookie: number, uid: number, scope: Scope): FlowRecord => ({
  cookie: BigInt(cookie), family: 4, protocol: 6, localAddress: '198.18.0.1', localPort: 1000 + cookie, remoteAddress: '198.18.0.2',
  remotePort: 80, uid, gid: uid, pid: 1, comm: 'x', cgroupId: 1n, scope, firstSeenMs: 0, lastSeenMs: 0, ...c(1),
});
const iface = (ifindex: number, name: string, n: number): InterfaceCounters => {
  const u = { rxBytes: 40 * n, txBytes: 40 * n, rxPackets: n, txPackets: n };
  return { ifindex, name, total: u, attributed: u, unattributed: u };
};

let dir: string;
let ledger: Ledger;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ubia-acct-'));
  ledger = new Ledger(join(dir, 'l.db'));
});
afterEach(() => {
  ledger.close();
  rmSync(dir, { recursive: true, force: true });
});

const names = createNameCache((uid) => (uid === 1000 ? 'alice' : undefined), 60_000);
/** cgroup ids as the test names them: 1 nginx.service, 2 a Slurm step, 3 gone before it was seen */
const PATHS = new Map([[1n, '/system.slice/nginx.service'], [2n, '/system.slice/slurmstepd.scope/job_7/step_0']]);
const present = new Set(PATHS.keys());
const cgroups = { pathOf: (id: bigint) => PATHS.get(id) ?? '', exists: (id: bigint) => present.has(id) };
const workloadOf = workloadNamer(DEFAULT_WORKLOAD_RULES);
const T = Date.UTC(2026, 10, 23, 12, 0, 0);

describe('accounting', () => {
  it('books only the counted scopes; unattributed per interface; names or numbers', () => {
    const { meter, state } = scriptedMeter();
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 10, flowIntervalMs: 0, flowsWanted: true, workloadOf }, cgroups);
    state.users = [user(1000, 'external', 1), user(1000, 'loopback', 5), user(2000, 'external', 2)];
    state.interfaces = [iface(1, 'lo', 3), iface(2, 'eth0', 1)];
    acc.poll(T);
    state.users = [user(1000, 'external', 4), user(1000, 'loopback', 9), user(2000, 'external', 2)];
    state.interfaces = [iface(1, 'lo', 6), iface(2, 'eth0', 3)];
    const { usage } = acc.poll(T + 1000);
    const u = usage();
    expect(u).toMatchObject({ startMs: T, endMs: T + 1000, users: [{ uid: 1000, user: 'alice', ...c(3) }], endedWorkloads: [] });
    // no process behind the users: the first poll's deltas are (unknown) at the second
    // settle, the second's are still owed
    expect(u.workloads!.map((w) => [w.uid, w.workload.name, w.rxBytes])).toEqual([[1000, '(unknown)', 100], [2000, '(unknown)', 200]]);
    const totals = new Map(ledger.totals(T, T + 60_000).map((t) => [`${t.uid}/${t.scope}`, t.rxPackets]));
    expect(totals).toEqual(new Map([['1000/external', 4], ['2000/external', 2], [`${UNATTRIBUTED_UID}/external`, 3]]));
    expect(acc.rates().get(1000)).toEqual({ rxRate: 300, txRate: 30, rxPayloadRate: 150, txPayloadRate: 15 });
    expect(names.name(2000)).toBe('2000');
    // the next poll's usage holds that poll's deltas only
    state.users = [user(1000, 'external', 5), user(1000, 'loopback', 9), user(2000, 'external', 4)];
    expect(acc.poll(T + 3000).usage().users).toEqual([
      { uid: 1000, user: 'alice', ...c(1) },
      { uid: 2000, user: '2000', ...c(2) },
    ]);
    expect(acc.rates()).toEqual(
      new Map([
        [1000, { rxRate: 50, txRate: 5, rxPayloadRate: 25, txPayloadRate: 2.5 }],
        [2000, { rxRate: 100, txRate: 10, rxPayloadRate: 50, txPayloadRate: 5 }],
      ]),
    );
  });

  it('reads flows at their own cadence and only the counted scopes', () => {
    const { meter, state } = scriptedMeter();
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 10, flowIntervalMs: 5000, flowsWanted: true, workloadOf }, cgroups);
    state.flows = [flow(1, 1000, 'external'), flow(2, 1000, 'loopback')];
    const first = acc.poll(T);
    expect(first.flows!().map((f) => [f.cookie, f.user])).toEqual([[1n, 'alice']]);
    expect(acc.activeFlowCount()).toBe(1);
    expect(acc.poll(T + 1000).flows).toBeUndefined();
    expect(acc.poll(T + 5000).flows!()).toHaveLength(1);
    expect(state.flowReads).toBe(2);
  });

  it('with no exporter of flows: reads them every minute, after dropped events, and when asked (after a fold)', () => {
    const { meter, state } = scriptedMeter();
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 10, flowIntervalMs: 5000, flowsWanted: false, workloadOf }, cgroups);
    state.flows = [flow(1, 1000, 'external')];
    for (let s = 0; s < 60; s++) expect(acc.poll(T + s * 1000).flows).toBeUndefined();
    expect(state.flowReads).toBe(1); // the first poll's
    acc.poll(T + 60_000);
    expect(state.flowReads).toBe(2);
    state.eventsDropped = 3; // flows that ended meanwhile wait in the table
    acc.poll(T + 61_000);
    acc.poll(T + 62_000);
    expect(state.flowReads).toBe(3);
    const folds = state.folds;
    state.flows = [flow(1, 1000, 'external'), flow(2, 2000, 'external')];
    acc.refreshFlows(T + 61_500); // the last read (61 s) is fresh enough
    expect(state.flowReads).toBe(3);
    acc.refreshFlows(T + 63_500);
    expect([state.flowReads, state.folds]).toEqual([4, folds + 1]);
    expect(acc.activeFlows().map((f) => f.cookie)).toEqual([1n, 2n]);
  });

  it('process rates between two reads; every poll while watched; exited ones forgotten after a read', () => {
    const { meter, state } = scriptedMeter();
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 10, flowIntervalMs: 5000, flowsWanted: true, workloadOf }, cgroups);
    state.processes = [proc(10, 1000, 1), proc(11, 1000, 1, 'loopback')];
    acc.poll(T);
    acc.watchProcesses(T);
    state.processes = [proc(10, 1000, 3), proc(11, 1000, 7, 'loopback'), proc(12, 2000, 2)];
    acc.processExited(10);
    acc.poll(T + 2000);
    expect(state.processReads).toBe(2);
    expect(state.forgotten).toEqual([10]);
    const byPid = new Map(acc.processList().map((p) => [p.pid, p]));
    expect([...byPid.keys()].sort()).toEqual([10, 12]);
    expect(byPid.get(10)).toMatchObject({ user: 'alice', rxBytes: 300, rxRate: 100, txRate: 10, rxPayloadRate: 50, txPayloadRate: 5 });
    expect(byPid.get(12)).toMatchObject({ rxRate: 100 }); // new since the last read: all of it
    acc.poll(T + 20_000); // no longer watched, but due at the flow cadence
    acc.poll(T + 21_000); // neither
    expect(state.processReads).toBe(3);
  });

  it('folds the sockets\' pending counts every poll while watched, else at the flow cadence', () => {
    const { meter, state } = scriptedMeter();
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 10, flowIntervalMs: 5000, flowsWanted: true, workloadOf }, cgroups);
    for (let s = 0; s < 10; s++) acc.poll(T + s * 1000); // due at 0 and 5 s
    expect(state.folds).toBe(2);
    acc.watchProcesses(T + 10_000);
    for (let s = 10; s < 15; s++) acc.poll(T + s * 1000);
    expect(state.folds).toBe(7);
  });

  it('books each user over its workloads exactly: process deltas regrouped by cgroup, the rest to (unknown) one settle later', () => {
    const { meter, state } = scriptedMeter();
    const options = { countLoopback: false, recentFlows: 10, flowIntervalMs: 0, flowsWanted: true, workloadOf };
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, options, cgroups);
    const names2 = (u: { workloads?: { workload: { name: string }; rxBytes: number; txPackets: number }[] }) =>
      Object.fromEntries((u.workloads ?? []).map((w) => [w.workload.name, [w.rxBytes, w.txPackets]]));
    // pid 10 in nginx.service, pid 11 in the Slurm step
    state.processes = [proc(10, 1000, 2, 'external', 1), proc(11, 1000, 3, 'external', 2), proc(12, 1000, 4, 'loopback', 1)];
    state.users = [user(1000, 'external', 5), user(1000, 'loopback', 4)];
    expect(names2(acc.poll(T).usage())).toEqual({ 'nginx.service': [200, 2], 'job_7/step_0': [300, 3] });
    // pid 10 moved into the step: the kernel keys its next counts by the new cgroup
    state.processes = [proc(10, 1000, 2, 'external', 1), proc(10, 1000, 1, 'external', 2), proc(11, 1000, 4, 'external', 2)];
    state.users = [user(1000, 'external', 7), user(1000, 'loopback', 4)];
    const second = acc.poll(T + 1000).usage();
    expect(names2(second)).toEqual({ 'job_7/step_0': [200, 2] });
    expect(second.workloads![0]!.workload).toMatchObject({ kind: 'step', jobId: '7', cgroupPath: PATHS.get(2n) });
    // a restart from the checkpoint: the process counters are not counted again
    acc.persist('boot-1');
    const again = new Accounting(meter, ledger, decodeCheckpoint(ledger.loadCheckpoint('boot-1').checkpoint), names, options, cgroups);
    expect(names2(again.poll(T + 2000).usage())).toEqual({});
    // a process entry lost (its counts after its final read): owed, then (unknown)
    state.processes = [proc(10, 1000, 2, 'external', 1), proc(10, 1000, 1, 'external', 2)];
    state.users = [user(1000, 'external', 8), user(1000, 'loopback', 4)];
    expect(names2(again.poll(T + 3000).usage())).toEqual({});
    expect(names2(again.poll(T + 4000).usage())).toEqual({ '(unknown)': [100, 1] });
    // nginx.service's cgroup went away: reported once
    present.delete(1n);
    expect(again.poll(T + 5000).usage().endedWorkloads).toEqual([{ kind: 'service', name: 'nginx.service', cgroupPath: PATHS.get(1n), cgroupId: 1n }]);
    expect(again.poll(T + 6000).usage().endedWorkloads).toEqual([]);
    present.add(1n);
    // in the ledger: every workload row of the user together is the user's total
    const user1000 = ledger.totals(T, T + 60_000, 1000).find((t) => t.scope === 'external')!;
    const units = ledger.unitTotals(T, T + 60_000, 1000);
    expect(units.every((u) => u.scope === 'external')).toBe(true);
    const sum = units.reduce((a, u) => ({ rx: a.rx + u.rxBytes, tp: a.tp + u.txPayloadBytes }), { rx: 0, tp: 0 });
    expect(sum).toEqual({ rx: user1000.rxBytes, tp: user1000.txPayloadBytes });
    expect(Object.fromEntries(units.map((u) => [u.cgroupPath, u.rxPackets]))).toEqual({ [PATHS.get(1n)!]: 2, [PATHS.get(2n)!]: 5, '': 1 });
  });

  it('keeps the last `recentFlows` ended flows of counted scopes', () => {
    const { meter } = scriptedMeter();
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 2, flowIntervalMs: 0, flowsWanted: true, workloadOf }, cgroups);
    for (let i = 1; i <= 4; i++) acc.flowEnded(flow(i, 1000, 'external'));
    acc.flowEnded(flow(9, 1000, 'loopback'));
    expect(acc.endedFlows().map((f) => f.cookie)).toEqual([3n, 4n]);
  });
});
