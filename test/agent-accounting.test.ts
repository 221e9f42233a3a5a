// Accounting over scripted kernel snapshots: which scope counts, what reaches the ledger
// and the exporters, process rates, the flow-read cadence, and exited processes being
// forgotten only after their final read.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Accounting } from '../src/agent/accounting.js';
import { zeroCounters } from '../src/core/counters.js';
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
const proc = (pid: number, uid: number, n: number, scope: Scope = 'external', cgroupId = 1n): ProcessCounters => ({ pid, uid, comm: `p${pid}`, scope, cgroupId, ...c(n) });
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
const T = Date.UTC(2026, 10, 23, 12, 0, 0);

describe('accounting', () => {
  it('books only the counted scopes; unattributed per interface; names or numbers', () => {
    const { meter, state } = scriptedMeter();
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 10, flowIntervalMs: 0, flowsWanted: true });
    state.users = [user(1000, 'external', 1), user(1000, 'loopback', 5), user(2000, 'external', 2)];
    state.interfaces = [iface(1, 'lo', 3), iface(2, 'eth0', 1)];
    acc.poll(T);
    state.users = [user(1000, 'external', 4), user(1000, 'loopback', 9), user(2000, 'external', 2)];
    state.interfaces = [iface(1, 'lo', 6), iface(2, 'eth0', 3)];
    const { usage } = acc.poll(T + 1000);
    expect(usage()).toEqual({ startMs: T, endMs: T + 1000, users: [{ uid: 1000, user: 'alice', ...c(3) }] });
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
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 10, flowIntervalMs: 5000, flowsWanted: true });
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
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 10, flowIntervalMs: 5000, flowsWanted: false });
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
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 10, flowIntervalMs: 5000, flowsWanted: true });
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
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 10, flowIntervalMs: 5000, flowsWanted: true });
    for (let s = 0; s < 10; s++) acc.poll(T + s * 1000); // due at 0 and 5 s
    expect(state.folds).toBe(2);
    acc.watchProcesses(T + 10_000);
    for (let s = 10; s < 15; s++) acc.poll(T + s * 1000);
    expect(state.folds).toBe(7);
  });

  it('keeps the last `recentFlows` ended flows of counted scopes', () => {
    const { meter } = scriptedMeter();
    const acc = new Accounting(meter, ledger, { users: [], interfaces: [] }, names, { countLoopback: false, recentFlows: 2, flowIntervalMs: 0, flowsWanted: true });
    for (let i = 1; i <= 4; i++) acc.flowEnded(flow(i, 1000, 'external'));
    acc.flowEnded(flow(9, 1000, 'loopback'));
    expect(acc.endedFlows().map((f) => f.cookie)).toEqual([3n, 4n]);
  });
});
