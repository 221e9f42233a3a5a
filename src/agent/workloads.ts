// The second dimension of the accounting: each user's traffic per workload (the cgroup
// of the socket's owner, named by the units rules). The kernel keys process totals by
// (uid, pid, comm, scope, cgroup), so a user's workload deltas are a regrouping of the
// process deltas; the user's own delta (from the user table, which never evicts) is then
// booked over them, counter by counter, so that the workloads of a user sum exactly to
// the user, whatever the process table lost:
//
// - a user delta meets the process deltas of the same (uid, scope) read in the same poll
//   (the process table is read first after a fold: what the user table holds then
//   includes everything the process table held);
// - what of a user delta found no process delta at one settle and still finds none at the
//   next goes to the unknown workload (cgroup path ""): process entries lost (the table
//   was full, or counts folded into an exited process's entry after its final read);
// - a process delta that no user delta meets by the next settle is dropped (a user beyond
//   the user table has no totals either).
//
// Paths are resolved when a cgroup id is first seen, so a cgroup removed later keeps its
// name for its last deltas.
import { CounterTracker, isZero, userKey, zeroCounters, type TrafficCounters } from '../core/counters.js';
import type { Columns } from '../kernel/index.js';
import type { ProcessCounters, Scope } from '../kernel/types.js';
import { row, unrow, type WorkloadState } from './checkpoint.js';

const FIELDS = ['rxBytes', 'txBytes', 'rxPackets', 'txPackets', 'rxPayloadBytes', 'txPayloadBytes'] as const;

/** A user's delta booked to one workload. */
export interface WorkloadBooking {
  uid: number;
  scope: Scope;
  /** "" when unknown */
  cgroupPath: string;
  delta: TrafficCounters;
}

interface Owed {
  uid: number;
  scope: Scope;
  c: TrafficCounters;
  /** what of `c` was owed already at the previous settle */
  aged: TrafficCounters;
}

interface Queued {
  cgroupPath: string;
  c: TrafficCounters;
  /** left over at the previous settle */
  aged: boolean;
}

/** Moves min(from, limit) per counter out of `from` (and `limit`) into the result. */
function take(from: TrafficCounters, limit: TrafficCounters): TrafficCounters {
  const out = zeroCounters();
  for (const f of FIELDS) {
    const n = Math.min(from[f], limit[f]);
    out[f] = n;
    from[f] -= n;
    limit[f] -= n;
  }
  return out;
}

const scopeOfKey = (key: number): Scope => (key % 2 === 1 ? 'loopback' : 'external');
const processKey = (uid: number, pid: number, scope: Scope, cgroupId: number, comm: string) => `${uid}:${pid}:${scope}:${cgroupId}:${comm}`;

export class WorkloadAccounting {
  private processes: CounterTracker<string>;
  /** the first process read only takes the counters as they are: resumed on pinned
   *  counters without the process values behind the ledger (a checkpoint from before
   *  workloads), everything they hold is booked already */
  private baseline: boolean;
  private owed = new Map<number, Owed>();
  /** user key → cgroup path → process deltas not yet booked */
  private queued = new Map<number, Map<string, Queued>>();
  /** cgroup id → path ("" when it could not be named) of every cgroup in the process
   *  table, and of the live ones after their processes left it; an id stays while the
   *  table holds it, so late counts of a cgroup that is gone keep its name and do not
   *  make it live again */
  private paths = new Map<number, string>();
  /** the named ones not yet seen gone (the end of a job is seen after its processes
   *  exited) */
  private live = new Set<number>();

  constructor(
    state: WorkloadState | undefined,
    resumed: boolean,
    private readonly pathOf: (cgroupId: bigint) => string,
  ) {
    this.processes = new CounterTracker(state?.processes.map(unrow));
    this.baseline = resumed && state === undefined;
    for (const [key, c] of state?.owed.map(unrow) ?? []) this.owed.set(key, { uid: Math.floor(key / 2), scope: scopeOfKey(key), c, aged: zeroCounters() });
    for (const [key, c] of state?.queued.map(unrow) ?? []) {
      const space = key.indexOf(' ');
      this.queue(Number(key.slice(0, space)), key.slice(space + 1), c);
    }
  }

  private queue(uk: number, cgroupPath: string, d: TrafficCounters): void {
    let byPath = this.queued.get(uk);
    if (!byPath) {
      byPath = new Map();
      this.queued.set(uk, byPath);
    }
    const q = byPath.get(cgroupPath);
    if (!q) byPath.set(cgroupPath, { cgroupPath, c: { ...d }, aged: false });
    else for (const f of FIELDS) q.c[f] += d[f];
  }

  /** One complete read of the process table: its deltas (of the counted scopes) wait for
   *  the users' deltas at the next settle. */
  observeProcesses(table: Columns<ProcessCounters>, counts: (scope: Scope) => boolean): void {
    const scopeAt = (i: number) => table.scope.values[table.scope.codes[i]!] as Scope;
    const commAt = (i: number) => table.comm.values[table.comm.codes[i]!]!;
    const baseline = this.baseline;
    this.baseline = false;
    this.processes.observe(
      table,
      (i) => processKey(table.uid[i]!, table.pid[i]!, scopeAt(i), table.cgroupId[i]!, commAt(i)),
      (i, d) => {
        const scope = scopeAt(i);
        if (baseline || !counts(scope)) return;
        this.queue(userKey(table.uid[i]!, scope), this.cgroupPath(table.cgroupId[i]!), d);
      },
    );
    // every cgroup in the table is named now (a resumed agent's too, before they move):
    // it may be gone by the next read
    const inTable = new Set<number>();
    for (let i = 0; i < table.length; i++) {
      const id = table.cgroupId[i]!;
      inTable.add(id);
      this.cgroupPath(id);
    }
    for (const id of this.paths.keys()) if (!inTable.has(id) && !this.live.has(id)) this.paths.delete(id);
  }

  private cgroupPath(id: number): string {
    let path = this.paths.get(id);
    if (path === undefined) {
      path = this.pathOf(BigInt(id));
      this.paths.set(id, path);
      if (id !== 0 && path !== '') this.live.add(id);
    }
    return path;
  }

  /** A user's delta of this poll (of a counted scope). */
  owe(uid: number, scope: Scope, d: Readonly<TrafficCounters>): void {
    const key = userKey(uid, scope);
    const o = this.owed.get(key);
    if (!o) this.owed.set(key, { uid, scope, c: { ...d }, aged: zeroCounters() });
    else for (const f of FIELDS) o.c[f] += d[f];
  }

  /** Books the users' deltas over their workloads (after a read of the process table). */
  settle(book: (b: WorkloadBooking) => void): void {
    for (const [uk, o] of this.owed) {
      for (const q of this.queued.get(uk)?.values() ?? []) {
        const delta = take(q.c, o.c);
        if (!isZero(delta)) book({ uid: o.uid, scope: o.scope, cgroupPath: q.cgroupPath, delta });
      }
      const lost = take(o.c, o.aged);
      if (!isZero(lost)) book({ uid: o.uid, scope: o.scope, cgroupPath: '', delta: lost });
      if (isZero(o.c)) this.owed.delete(uk);
      else o.aged = { ...o.c };
    }
    for (const [uk, byPath] of this.queued) {
      for (const [path, q] of byPath) if (q.aged || isZero(q.c)) byPath.delete(path);
      for (const q of byPath.values()) q.aged = true;
      if (byPath.size === 0) this.queued.delete(uk);
    }
  }

  /** The cgroups seen with traffic that are gone now (`exists` tells by id and path),
   *  each reported once. */
  ended(exists: (cgroupId: bigint, cgroupPath: string) => boolean): { cgroupId: bigint; cgroupPath: string }[] {
    const gone: { cgroupId: bigint; cgroupPath: string }[] = [];
    for (const id of this.live) {
      const cgroupPath = this.paths.get(id)!;
      const cgroupId = BigInt(id);
      if (!exists(cgroupId, cgroupPath)) {
        gone.push({ cgroupId, cgroupPath });
        this.live.delete(id);
      }
    }
    return gone;
  }

  /** What the checkpoint keeps of it. */
  state(): WorkloadState {
    const queued: [string, TrafficCounters][] = [];
    for (const [uk, byPath] of this.queued) for (const q of byPath.values()) queued.push([`${uk} ${q.cgroupPath}`, q.c]);
    return {
      processes: Array.from(this.processes.lastValues(), row),
      owed: Array.from(this.owed, ([k, o]) => row([k, o.c])),
      queued: queued.map(row),
    };
  }
}
