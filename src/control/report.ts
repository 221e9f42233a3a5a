// Answers `report`: the per-user totals `users` gives for the same range (the ledger,
// through the caller's Scope), each broken down so that its rows add up to it exactly —
// by period from the ledger's own buckets, or by process, remote network or port from the
// flow store, with the part the flow store does not hold for the range as a row of its
// own (`unrecorded`): the ledger is the reference, the store explains it — or by unit
// from the ledger's workload buckets, which the agent books to sum to the user's.
import { addInto, countersOf, isZero, zeroCounters, type TrafficCounters } from '../core/counters.js';
import { addressToBigInt, bigIntToAddress, isMappedV4, prefixMask } from '../history/address.js';
import { compileQuery } from '../history/query.js';
import type { FlowStore } from '../history/store.js';
import type { Ledger } from '../ledger/ledger.js';
import { workloadGroup, type Workload } from '../core/workload.js';
import { cell } from './history.js';
import { type ReportBreakdown, type ReportResult, type ReportRow, type ReportUser, type Request } from './protocol.js';
import type { Scope } from './scope.js';
import { ControlError } from './server.js';
import { countedRange, unattributedFor, visibleUsage, type UsageSource } from './usage.js';

type ReportRequest = Extract<Request, { op: 'report' }>;

export interface ReportSource extends UsageSource {
  ledger: Pick<Ledger, 'periodTotals' | 'countedRange' | 'unitTotals'>;
  history: FlowStore | undefined;
  /** a cgroup path named by the units rules in force */
  nameWorkload(cgroupPath: string): Workload;
  /** names for the rows of one reply */
  namer(): (uid: number) => string;
}

/** The flow store's grouping for each breakdown it answers (query language group keys). */
const FLOW_BREAKDOWNS: Record<Exclude<ReportBreakdown, 'user' | 'time' | 'unit'>, { groupBy: string; keys: string[] }> = {
  process: { groupBy: 'uid,comm,exe', keys: ['comm', 'exe'] },
  remote: { groupBy: 'uid,remote/24', keys: ['network'] },
  port: { groupBy: 'uid,proto,remote_port', keys: ['proto', 'port'] },
};

/** (user, key) groups read from the store at most, the busiest first: past them a
 *  report would not fit one reply anyway, and the smallest groups' traffic shows in the
 *  users' `unrecorded` rows (the sums stay exact) */
const MAX_GROUPS = 1_000_000;

const COUNTERS = ['rxBytes', 'txBytes', 'rxPackets', 'txPackets', 'rxPayloadBytes', 'txPayloadBytes'] as const;
const bytesOf = (c: TrafficCounters) => c.rxBytes + c.txBytes;

/** "198.18.5.0/24" or "2001:db8:1:2::/64" from the grouped (masked) address; for an
 *  auditor its Crypto-PAn form, masked again (prefix-preserving: the same network stays one). */
function network(masked: bigint, scope: Scope, uid: number): string {
  const v4 = isMappedV4(masked);
  const mask = prefixMask(v4 ? 96 + 24 : 64);
  let text = bigIntToAddress(masked);
  if (scope.role === 'auditor') {
    const anonymised = scope.present({ uid, user: '', remoteAddress: text, family: v4 ? 4 : 6 }).remoteAddress!;
    text = bigIntToAddress((addressToBigInt(anonymised) ?? 0n) & mask);
  }
  return `${text}/${v4 ? 24 : 64}`;
}

/** Flow-store rows per uid for the range: key and counters. */
async function flowRows(store: FlowStore, by: keyof typeof FLOW_BREAKDOWNS, req: ReportRequest, uids: number[] | undefined, scope: Scope): Promise<Map<number, ReportRow[]>> {
  const { groupBy } = FLOW_BREAKDOWNS[by];
  const q = compileQuery({ fromMs: req.from, toMs: req.to, groupBy, order: '-bytes', limit: MAX_GROUPS, uids });
  const out = new Map<number, ReportRow[]>();
  for (const r of await store.query(q)) {
    const uid = r.k0 as number;
    const key: ReportRow['key'] =
      by === 'process'
        ? // a path (/home/alice/bin/…) can name its owner: not for an auditor
          { comm: cell('text', r.k1, store), exe: scope.role === 'auditor' ? null : cell('text', r.k2, store) }
        : by === 'remote'
          ? { network: network(r.k1 as bigint, scope, uid) }
          : { proto: cell('protocol', r.k1, store), port: cell('number', r.k2, store) };
    const row: ReportRow = {
      key,
      rxBytes: r.rx_bytes as number,
      txBytes: r.tx_bytes as number,
      rxPackets: r.rx_packets as number,
      txPackets: r.tx_packets as number,
      rxPayloadBytes: r.rx_payload as number,
      txPayloadBytes: r.tx_payload as number,
    };
    const list = out.get(uid) ?? [];
    list.push(row);
    out.set(uid, list);
  }
  return out;
}

/** Ledger rows per uid for the range, one per unit (as `ubia units` groups them), for
 *  the users the caller sees; an auditor sees unit names without uids (user@1000.service). */
function unitRows(source: ReportSource, req: ReportRequest, scope: Scope): Map<number, ReportRow[]> {
  const onlyUid = scope.role === 'self' ? scope.callerUid : undefined;
  const rows = new Map<string, ReportRow & { uid: number }>();
  for (const t of source.ledger.unitTotals(req.from, req.to, onlyUid)) {
    if ((t.scope === 'loopback' && !source.countLoopback()) || !scope.sees(t.uid)) continue;
    const unit = scope.present({ uid: t.uid, user: '', unit: workloadGroup(source.nameWorkload(t.cgroupPath), 'unit') }).unit;
    const id = `${t.uid} ${unit}`;
    let row = rows.get(id);
    if (!row) rows.set(id, (row = { uid: t.uid, key: { unit }, ...zeroCounters() }));
    addInto(row, t);
  }
  const out = new Map<number, ReportRow[]>();
  for (const { uid, ...row } of rows.values()) out.set(uid, [...(out.get(uid) ?? []), row]);
  return out;
}

/** The busiest `top` rows, the rest summed into one `other` row. */
function keepTop(rows: ReportRow[], top: number | undefined): ReportRow[] {
  rows.sort((a, b) => bytesOf(b) - bytesOf(a));
  if (top === undefined || rows.length <= top) return rows;
  const other: ReportRow = { key: Object.fromEntries(Object.keys(rows[0]!.key).map((k) => [k, null])), note: 'other', ...zeroCounters() };
  for (const r of rows.slice(top)) addInto(other, r);
  return [...rows.slice(0, top), other];
}

/** The user's total minus its rows: what the flow store does not explain (may be zero). */
function unrecorded(total: TrafficCounters, rows: ReportRow[], keys: string[]): ReportRow | undefined {
  const rest = countersOf(total);
  for (const r of rows) for (const k of COUNTERS) rest[k] -= r[k];
  return isZero(rest) ? undefined : { key: Object.fromEntries(keys.map((k) => [k, null])), note: 'unrecorded', ...rest };
}

export async function report(source: ReportSource, req: ReportRequest, scope: Scope): Promise<ReportResult> {
  const wanted = scope.userFilter(req.user);
  const edges = req.by === 'time' ? req.edges : [];
  const usage = visibleUsage(source, scope, req.from, req.to, edges);
  const users = [...usage.users.values()].filter((u) => wanted(u.uid));
  const name = source.namer();
  for (const u of users) u.user = name(u.uid);

  let rowsOf: (uid: number, total: TrafficCounters) => ReportRow[];
  if (req.by === 'user') rowsOf = () => [];
  else if (req.by === 'time') {
    const starts = [req.from, ...edges];
    rowsOf = (uid) =>
      [...(usage.periods.get(uid) ?? new Map<number, TrafficCounters>())]
        .sort(([a], [b]) => a - b)
        .map(([period, c]) => ({ key: { start: new Date(starts[period]!).toISOString() }, ...countersOf(c) }));
  } else {
    const by = req.by;
    let found: Map<number, ReportRow[]>;
    if (by === 'unit') found = unitRows(source, req, scope);
    else {
      const store = source.history;
      if (!store) throw new ControlError('internal', `a report --by ${by} reads the flow history, which the agent does not keep ([history] enabled = false, or the store did not open: see the agent log); --by user, hour, day, month and unit read the ledger`);
      // an admin's whole host in one scan; anyone else's only their users' rows
      const uids = scope.role === 'admin' && req.user === undefined ? undefined : users.map((u) => u.uid);
      found = await flowRows(store, by, req, uids, scope);
    }
    const keys = by === 'unit' ? ['unit'] : FLOW_BREAKDOWNS[by].keys;
    rowsOf = (uid, total) => {
      const rows = keepTop(found.get(uid) ?? [], req.top);
      const rest = unrecorded(total, rows, keys);
      return rest ? [...rows, rest] : rows;
    };
  }
  const result: ReportUser[] = users
    .map((u) => ({ ...scope.present(u), rows: rowsOf(u.uid, u) }))
    .sort((a, b) => bytesOf(b) - bytesOf(a) || a.uid - b.uid);
  return {
    from: new Date(req.from).toISOString(),
    to: new Date(req.to).toISOString(),
    ...countedRange(source, req.from, req.to),
    by: req.by,
    users: result,
    unattributed: unattributedFor(scope, usage),
  };
}
