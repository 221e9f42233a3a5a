// One poll of the meter: kernel counters → deltas per user (booked in the ledger and
// handed to exporters), per process and per interface; rates for the live view; the
// active flows and a ring of recently ended ones for `ubia flows`.
import type { FlowRecord, InterfaceCounters, ProcessCounters, Scope, TrafficCounters } from '../kernel/types.js';
import type { FlowSnapshot, UsageInterval, UserUsage, Workload, WorkloadUsage } from '../export/types.js';
import { addInto, columnsOf, copyInto, counterDelta, countersOf, CounterTracker, userKey, zeroCounters } from '../core/counters.js';
import type { MeterReader } from './meter.js';
import { rows, type Columns } from '../kernel/index.js';
import { encodeCheckpoint, type Checkpoint } from './checkpoint.js';
import type { NameCache } from './names.js';
import { UNATTRIBUTED_UID, type Ledger } from '../ledger/ledger.js';
import { WorkloadAccounting } from './workloads.js';

export interface Rate {
  /** wire bytes per second over the last poll interval */
  rxRate: number;
  txRate: number;
  /** payload bytes (what processes sent and received) per second, same interval */
  rxPayloadRate: number;
  txPayloadRate: number;
}

const NO_RATE: Rate = { rxRate: 0, txRate: 0, rxPayloadRate: 0, txPayloadRate: 0 };

function rateOf(d: TrafficCounters, seconds: number): Rate {
  if (seconds <= 0) return NO_RATE;
  return { rxRate: d.rxBytes / seconds, txRate: d.txBytes / seconds, rxPayloadRate: d.rxPayloadBytes / seconds, txPayloadRate: d.txPayloadBytes / seconds };
}

export interface ProcessView extends TrafficCounters, Rate {
  uid: number;
  user: string;
  pid: number;
  comm: string;
}

export interface AccountingOptions {
  countLoopback: boolean;
  recentFlows: number;
  /** fold (and read processes) this often, and read the flow table this often while
   *  flowsWanted */
  flowIntervalMs: number;
  /** an exporter takes the active flows: else the flow table is read only when asked
   *  (`ubia flows`) and every FLOW_HOUSEKEEPING_MS */
  flowsWanted: boolean;
  /** names a cgroup path by the units rules in force */
  workloadOf: (cgroupPath: string) => Workload;
}

/** Where cgroup ids become paths (kernel/cgroups.ts over the host's cgroup2 mount). */
export interface CgroupNaming {
  /** the path of a cgroup id, "" when it cannot be named */
  pathOf(id: bigint): string;
  /** the cgroup of this id is still at this path */
  exists(id: bigint, path: string): boolean;
}

/** One (user, workload) of the live view: the last settle's deltas as rates. */
export interface WorkloadView extends Rate {
  uid: number;
  user: string;
  workload: Workload;
}

/** With no exporter of flows: how often the flow table is read anyway, to keep the flow
 *  count of `systemctl status` recent. (Flows that ended while the ring buffer was full
 *  wait in the table: a read after events were dropped hands them over.) */
const FLOW_HOUSEKEEPING_MS = 60_000;

/** A read of the process table, kept as the addon's columns (typed arrays, outside the
 *  JS heap): rows are made only when someone asks for processes. Kept as objects, the
 *  10,000s of rows that live from one read to the next are what V8 moves to its old
 *  space and has to collect there. */
interface ProcessRead {
  atMs: number;
  columns: Columns<ProcessCounters>;
}

const interfaceScope = (i: { name: string }): Scope => (i.name === 'lo' ? 'loopback' : 'external');
const unattributedOf = (i: InterfaceCounters): TrafficCounters & { ifindex: number; name: string } => ({
  ifindex: i.ifindex,
  name: i.name,
  ...i.unattributed,
  rxPayloadBytes: 0,
  txPayloadBytes: 0,
});

/** A user's deltas in the poll numbered `round`: one object per uid for the agent's
 *  life, overwritten when the user moves again, so a poll allocates nothing per user. */
interface PollDelta extends TrafficCounters {
  round: number;
}

export class Accounting {
  private users: CounterTracker<number>;
  private interfaces: CounterTracker<string>;
  private lastPollMs: number | undefined;
  private lastFoldMs: number | undefined;
  private lastFlowsMs: number | undefined;
  private droppedAtFlowRead = 0;
  private round = 0;
  private pollDeltas = new Map<number, PollDelta>();
  private lastRound = { round: 0, startMs: 0, endMs: 0 };
  private userRates: Map<number, Rate> | undefined;
  /** the last two process reads; views and rates are built from them only when asked */
  private procNow: ProcessRead | undefined;
  private procPrev: ProcessRead | undefined;
  private procViews: ProcessView[] | undefined;
  private watchedUntilMs = 0;
  /** the last flow-table read, as columns: rows are made for each consumer, not kept */
  private flowRead: Columns<FlowRecord> | undefined;
  private ended: FlowSnapshot[] = [];
  private exited = new Set<number>();
  private workloads: WorkloadAccounting;
  /** the last settle's bookings per (uid, cgroup path) over the counted scopes, and the
   *  interval they cover (the live view's rates) */
  private settled = { workloads: [] as WorkloadUsage[], startMs: 0, endMs: 0 };
  private lastSettleMs: number | undefined;
  /** cgroup id → its workload by the rules in force (emptied when they change) */
  private workloadById = new Map<bigint, Workload>();
  private bookedListener: ((nowMs: number, uid: number, scope: Scope, delta: TrafficCounters) => void) | undefined;

  constructor(
    private readonly meter: MeterReader,
    private readonly ledger: Ledger,
    checkpoint: Checkpoint,
    private readonly names: NameCache,
    private options: AccountingOptions,
    private readonly cgroups: CgroupNaming,
  ) {
    this.users = new CounterTracker(checkpoint.users);
    this.interfaces = new CounterTracker(checkpoint.interfaces);
    this.workloads = new WorkloadAccounting(checkpoint.workloads, checkpoint.users.length > 0, (id) => cgroups.pathOf(id));
  }

  setOptions(options: AccountingOptions): void {
    if (options.workloadOf !== this.options.workloadOf) this.workloadById.clear();
    this.options = options;
    this.ended = options.recentFlows === 0 ? [] : this.ended.slice(-options.recentFlows);
  }

  counts(scope: Scope): boolean {
    return scope === 'external' || this.options.countLoopback;
  }

  /** Adds the owner's name to a flow the meter handed over (in place: 10,000s per poll). */
  snapshotFlow(flow: FlowRecord): FlowSnapshot {
    const snap = flow as FlowSnapshot;
    snap.user = this.names.name(flow.uid);
    snap.workload = this.workloadOf(flow.cgroupId);
    return snap;
  }

  /** A flow closed: remembered for `ubia flows`; returns it with its owner's name. */
  flowEnded(flow: FlowRecord): FlowSnapshot {
    const snap = this.snapshotFlow(flow);
    if (this.options.recentFlows > 0 && this.counts(flow.scope)) {
      this.ended.push(snap);
      if (this.ended.length > this.options.recentFlows) this.ended.splice(0, this.ended.length - this.options.recentFlows);
    }
    return snap;
  }

  /** Hears every user delta booked in the ledger (the quotas count them). */
  onBooked(listener: (nowMs: number, uid: number, scope: Scope, delta: TrafficCounters) => void): void {
    this.bookedListener = listener;
  }

  /** A process exited: its entries are dropped from the kernel after the next read. */
  processExited(pid: number): void {
    this.exited.add(pid);
  }

  /**
   * Reads the meter once and books the deltas. Returns what the exporters get, as
   * functions that make it when called (an agent without exporters never does): the
   * users' usage in this poll, and every `flowIntervalMs` while flows are wanted (else
   * undefined) the active flows, the bulk of the data, which exporters apply their own
   * active timeouts to.
   */
  poll(nowMs: number): { usage: () => UsageInterval; flows: (() => FlowSnapshot[]) | undefined } {
    const round = ++this.round;
    // A fold visits every open socket (~1 µs each): every poll only while someone
    // watches the live view, else every flowIntervalMs. The ledger's minute buckets and
    // the exporters' intervals (60 s and more) lose nothing by it.
    const foldDue = this.lastFoldMs === undefined || nowMs - this.lastFoldMs >= this.options.flowIntervalMs;
    const watched = nowMs < this.watchedUntilMs;
    // the process table feeds the workloads' deltas, `ubia top` and `procs`: read after
    // each fold, before the users (so the users' table then holds all it holds), and
    // whenever users moved without a fold (packets of closed sockets count directly)
    const folding = foldDue || watched;
    if (folding) {
      this.meter.fold();
      this.lastFoldMs = nowMs;
      this.readProcesses(nowMs);
    }
    let usersMoved = false;
    const users = this.meter.readUserColumns();
    const scopeAt = (i: number) => users.scope.values[users.scope.codes[i]!] as Scope;
    this.users.observe(
      users,
      (i) => userKey(users.uid[i]!, scopeAt(i)),
      (i, d) => {
        const uid = users.uid[i]!;
        const scope = scopeAt(i);
        if (!this.counts(scope)) return;
        this.ledger.add(nowMs, uid, scope, d);
        this.workloads.owe(uid, scope, d);
        usersMoved = true;
        this.bookedListener?.(nowMs, uid, scope, d);
        const seen = this.pollDeltas.get(uid);
        if (!seen) this.pollDeltas.set(uid, { ...countersOf(d), round });
        else if (seen.round === round) addInto(seen, d);
        else {
          copyInto(seen, d);
          seen.round = round;
        }
      },
    );
    this.lastRound = { round, startMs: this.lastPollMs ?? nowMs, endMs: nowMs };
    this.userRates = undefined;

    const interfaces = this.meter.readInterfaces().map(unattributedOf);
    this.interfaces.observe(
      columnsOf(interfaces),
      (i) => `${interfaces[i]!.ifindex}:${interfaces[i]!.name}`,
      (i, d) => {
        const scope = interfaceScope(interfaces[i]!);
        if (this.counts(scope)) this.ledger.add(nowMs, UNATTRIBUTED_UID, scope, d);
      },
    );

    if (!folding && usersMoved) this.readProcesses(nowMs);
    const settled = folding || usersMoved ? this.settle(nowMs) : [];
    const endedWorkloads = foldDue ? this.endedWorkloads() : [];

    // reading 10,000 flows costs as much as the rest of a poll: only for their consumers
    const flowsEvery = this.options.flowsWanted ? this.options.flowIntervalMs : FLOW_HOUSEKEEPING_MS;
    const dropped = this.meter.health().eventsDropped;
    const flowsDue = this.lastFlowsMs === undefined || nowMs - this.lastFlowsMs >= flowsEvery || dropped !== this.droppedAtFlowRead;
    if (flowsDue) {
      this.readFlows(nowMs);
      this.droppedAtFlowRead = dropped;
    }
    this.lastPollMs = nowMs;
    const { startMs, endMs } = this.lastRound;
    const exported = flowsDue && this.options.flowsWanted;
    return {
      usage: () => ({ startMs, endMs, users: this.usersOfRound(round), workloads: settled, endedWorkloads }),
      flows: exported ? () => this.activeFlows() : undefined,
    };
  }

  /** A read of the process table: the workloads' process deltas, the live process view;
   *  exited processes leave the kernel's table after their final read. */
  private readProcesses(nowMs: number): void {
    this.procPrev = this.procNow;
    this.procNow = { atMs: nowMs, columns: this.meter.readProcessColumns() };
    this.procViews = undefined;
    this.workloads.observeProcesses(this.procNow.columns, (scope) => this.counts(scope));
    for (const pid of this.exited) this.meter.forgetProcess(pid);
    this.exited.clear();
  }

  /** Books the users' deltas since the last settle over their workloads; returns them per
   *  (user, workload), the counted scopes together. */
  private settle(nowMs: number): WorkloadUsage[] {
    const rows = new Map<string, WorkloadUsage>();
    this.workloads.settle((b) => {
      this.ledger.addUnit(nowMs, b.uid, b.scope, b.cgroupPath, b.delta);
      const key = `${b.uid} ${b.cgroupPath}`;
      const r = rows.get(key);
      if (r) addInto(r, b.delta);
      else rows.set(key, { uid: b.uid, user: this.names.name(b.uid), workload: this.options.workloadOf(b.cgroupPath), ...countersOf(b.delta) });
    });
    const list = [...rows.values()];
    this.settled = { workloads: list, startMs: this.lastSettleMs ?? nowMs, endMs: nowMs };
    this.lastSettleMs = nowMs;
    return list;
  }

  /** Workloads whose cgroup went away since the last look (at the fold cadence). */
  private endedWorkloads(): Workload[] {
    return this.workloads
      .ended((id, path) => this.cgroups.exists(id, path))
      .map(({ cgroupId, cgroupPath }) => ({ ...this.options.workloadOf(cgroupPath), cgroupId }));
  }

  /** A cgroup path named by the units rules in force. */
  nameWorkload(cgroupPath: string): Workload {
    return this.options.workloadOf(cgroupPath);
  }

  /** The workload of a cgroup id by the rules in force (its path resolved once; one
   *  object per cgroup: 10,000s of flows are snapshotted per read). */
  workloadOf(cgroupId: bigint): Workload {
    let w = this.workloadById.get(cgroupId);
    if (!w) {
      const named = this.options.workloadOf(this.cgroups.pathOf(cgroupId));
      w = cgroupId === 0n ? named : { ...named, cgroupId };
      if (this.workloadById.size >= 100_000) this.workloadById.clear();
      this.workloadById.set(cgroupId, w);
    }
    return w;
  }

  /** Per (user, workload): the rates of the last settle (every poll while `ubia top`
   *  watches, else every flow interval). */
  workloadRates(): WorkloadView[] {
    const { workloads, startMs, endMs } = this.settled;
    const seconds = (endMs - startMs) / 1000;
    return workloads.map((w) => ({ uid: w.uid, user: w.user, workload: w.workload, ...rateOf(w, seconds) }));
  }

  private readFlows(nowMs: number): void {
    this.flowRead = this.meter.readFlowColumns();
    this.lastFlowsMs = nowMs;
  }

  /** Someone asks for the flows (`ubia flows`): read them now, after a fold, unless the
   *  last read is from this very moment. Their counts reach the users' totals at the next
   *  poll, as with any fold. */
  refreshFlows(nowMs: number): void {
    if (this.lastFlowsMs !== undefined && nowMs - this.lastFlowsMs < 1000) return;
    this.meter.fold();
    this.readFlows(nowMs);
  }

  /** Processes of the counted scopes, one row per (pid, uid, comm), with the rate
   *  between the last two polls (a process new since the previous poll: all of it). */
  private buildProcessViews(): ProcessView[] {
    const now = this.procNow;
    if (!now) return [];
    const prev = this.procPrev;
    const seconds = prev ? (now.atMs - prev.atMs) / 1000 : 0;
    const before = new Map<string, ProcessCounters>();
    if (prev) for (const p of rows(prev.columns)) before.set(`${p.pid}:${p.uid}:${p.comm}:${p.scope}`, p);
    const views = new Map<string, ProcessView>();
    for (const p of rows(now.columns)) {
      if (!this.counts(p.scope)) continue;
      const key = `${p.pid}:${p.uid}:${p.comm}`;
      let v = views.get(key);
      if (!v) {
        v = { uid: p.uid, user: this.names.name(p.uid), pid: p.pid, comm: p.comm, ...zeroCounters(), ...NO_RATE };
        views.set(key, v);
      }
      addInto(v, p);
      const r = rateOf(counterDelta(p, before.get(`${key}:${p.scope}`)), seconds);
      v.rxRate += r.rxRate;
      v.txRate += r.txRate;
      v.rxPayloadRate += r.rxPayloadRate;
      v.txPayloadRate += r.txPayloadRate;
    }
    return [...views.values()];
  }

  /** Writes the pending usage with the counter values behind it, and whatever
   *  `alongside` writes, in one transaction. */
  persist(bootId: string, alongside?: () => void): void {
    this.ledger.flush(bootId, encodeCheckpoint(this.users.lastValues(), this.interfaces.lastValues(), this.workloads.state()), Date.now(), alongside);
  }

  /** Each user's deltas in poll `round`, with their names. */
  private usersOfRound(round: number): UserUsage[] {
    const out: UserUsage[] = [];
    for (const [uid, d] of this.pollDeltas) if (d.round === round) out.push({ uid, user: this.names.name(uid), ...countersOf(d) });
    return out;
  }

  /** Wire and payload bytes per second per user over the last poll interval (counted scopes). */
  rates(): Map<number, Rate> {
    if (!this.userRates) {
      const { round, startMs, endMs } = this.lastRound;
      const seconds = (endMs - startMs) / 1000;
      this.userRates = new Map();
      for (const [uid, d] of this.pollDeltas) {
        if (d.round === round) this.userRates.set(uid, rateOf(d, seconds));
      }
    }
    return this.userRates;
  }

  /** Someone looks at the live view (top, procs): fold and read processes every poll for
   *  the next 10 s. */
  watchProcesses(nowMs: number): void {
    this.watchedUntilMs = nowMs + 10_000;
  }

  /** Processes as of the last read (every poll while watched, else every flow interval). */
  processList(): ProcessView[] {
    this.procViews ??= this.buildProcessViews();
    return this.procViews;
  }

  /** The flows of the counted scopes as of the last read, with their owners' names. */
  activeFlows(): FlowSnapshot[] {
    if (!this.flowRead) return [];
    return rows(this.flowRead).filter((f) => this.counts(f.scope)).map((f) => this.snapshotFlow(f));
  }

  /** How many flows `activeFlows()` would list, without making them. */
  activeFlowCount(): number {
    const scope = this.flowRead?.scope;
    if (!scope) return 0;
    const counted = scope.values.map((v) => this.counts(v as Scope));
    let n = 0;
    for (const code of scope.codes) if (counted[code]) n++;
    return n;
  }

  endedFlows(): FlowSnapshot[] {
    return this.ended;
  }
}
