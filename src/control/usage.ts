// Per-user usage from the ledger as a caller's Scope sees it: the one place `users`, `top`
// and `report` read totals from, so their figures agree to the byte.
import { addInto, zeroCounters, type TrafficCounters } from '../core/counters.js';
import { UNATTRIBUTED_UID, type Ledger } from '../ledger/ledger.js';
import type { CountedRange, UsersResult, UserTotals } from './protocol.js';
import type { Scope } from './scope.js';

export interface UsageSource {
  ledger: Pick<Ledger, 'periodTotals' | 'countedRange'>;
  countLoopback(): boolean;
}

export interface VisibleUsage {
  /** per user in sight, over the whole range (named later: `user` is empty) */
  users: Map<number, UserTotals>;
  /** the same, per period: uid → period index (see Ledger.periodTotals) → counters */
  periods: Map<number, Map<number, TrafficCounters>>;
  /** traffic without a local socket owner */
  unattributed: TrafficCounters;
}

/** Usage of the users in sight over [fromMs, toMs), counted scopes merged, cut at `edges`.
 *  A caller who sees only themselves reads only their own ledger rows. */
export function visibleUsage(source: UsageSource, scope: Scope, fromMs: number, toMs: number, edges: readonly number[] = []): VisibleUsage {
  const onlyUid = scope.role === 'self' ? scope.callerUid : undefined;
  const users = new Map<number, UserTotals>();
  const periods = new Map<number, Map<number, TrafficCounters>>();
  const unattributed = zeroCounters();
  for (const t of source.ledger.periodTotals(fromMs, toMs, edges, onlyUid)) {
    if (t.scope === 'loopback' && !source.countLoopback()) continue;
    if (t.uid === UNATTRIBUTED_UID) {
      addInto(unattributed, t);
      continue;
    }
    if (!scope.sees(t.uid)) continue;
    let u = users.get(t.uid);
    let p = periods.get(t.uid);
    if (!u || !p) {
      u = { uid: t.uid, user: '', ...zeroCounters() };
      p = new Map();
      users.set(t.uid, u);
      periods.set(t.uid, p);
    }
    addInto(u, t);
    let c = p.get(t.period);
    if (!c) {
      c = zeroCounters();
      p.set(t.period, c);
    }
    addInto(c, t);
  }
  return { users, periods, unattributed };
}

/** The unattributed wire totals, for the roles that see host-wide figures (else null). */
export function unattributedFor(scope: Scope, usage: VisibleUsage): UsersResult['unattributed'] {
  const u = usage.unattributed;
  return scope.hostWide ? { rxBytes: u.rxBytes, txBytes: u.txBytes, rxPackets: u.rxPackets, txPackets: u.txPackets } : null;
}

/** The bucket-aligned range the ledger sums for [fromMs, toMs), for a reply. */
export function countedRange(source: UsageSource, fromMs: number, toMs: number): CountedRange {
  const r = source.ledger.countedRange(fromMs, toMs);
  return { countedFrom: new Date(r.fromMs).toISOString(), countedTo: new Date(r.toMs).toISOString() };
}
