// The quota policy: each user's usage in the current period of their rule, the alerts at
// its thresholds, and the kernel verdict at its limit. Usage is what the ledger holds for
// the period when the rules are (re)built — at the start, a reload and each period's end —
// plus the deltas the accounting books after that, so a poll costs no query. Only external
// traffic counts: a user's loopback traffic never leaves the host and is no network use.
// What must survive a restart (alerts sent, grants, resets) is in the ledger's database
// (ledger/quota-store.ts), written before anything acts on it.
import type { Logger } from 'pino';
import type { Scope, TrafficCounters } from '../../kernel/types.js';
import { UNATTRIBUTED_UID, type Ledger } from '../../ledger/ledger.js';
import type { QuotaAdjustment, QuotaStore } from '../../ledger/quota-store.js';
import { LOCAL_SERVICES } from '../../config/quota.js';
import type { QuotaAction, QuotaEnforcer } from '../../kernel/quota.js';
import { periodAt, type Period, type PeriodKind } from './period.js';
import { ruleFor, type Membership, type QuotaRule } from './rules.js';

export type QuotaState = 'ok' | 'warned' | 'blocked' | 'throttled';

/** One user's quota as `ubia quota` shows it. */
export interface QuotaStatus {
  uid: number;
  user: string;
  /** the rule's match, as written */
  match: string;
  period: Period;
  direction: QuotaRule['direction'];
  action: string;
  /** counted bytes since the period's start (or the last reset) */
  usedBytes: number;
  /** the rule's limit plus what was granted for this period */
  limitBytes: number;
  grantedBytes: number;
  /** thresholds alerted in this period */
  alerted: number[];
  state: QuotaState;
}

/** One threshold reached: what the alert says. */
export interface QuotaAlert {
  uid: number;
  user: string;
  usedBytes: number;
  limitBytes: number;
  percent: number;
  period: Period;
  rule: QuotaRule;
}

export interface QuotaEngineOptions {
  ledger: Pick<Ledger, 'totals'>;
  store: QuotaStore;
  /** NSS facts for matching rules, and names for `user:` rules' users */
  who: Membership & { uidOf(name: string): number | undefined };
  /** the kernel's enforcement; undefined when this agent has none (block and throttle then only alert) */
  enforcer: QuotaEnforcer | undefined;
  alert(a: QuotaAlert): void;
  logger: Logger;
}

export interface QuotaEngine {
  /** puts rules in force (start, reload): usage reloaded from the ledger, the kernel's verdicts reconciled */
  setRules(rules: readonly QuotaRule[], nowMs: number): void;
  /** a delta the accounting booked in the ledger */
  booked(nowMs: number, uid: number, scope: Scope, delta: TrafficCounters): void;
  /** after each poll: period ends, then thresholds and limits of the users that moved */
  check(nowMs: number): void;
  /** the user's quota, or undefined when no rule applies to them */
  status(uid: number, nowMs: number): QuotaStatus | undefined;
  /** every user with a rule and usage this period, and every `user:` rule's user */
  statuses(nowMs: number): QuotaStatus[];
  grant(uid: number, bytes: number, byUid: number, nowMs: number): QuotaStatus | undefined;
  reset(uid: number, byUid: number, nowMs: number): QuotaStatus | undefined;
}

interface UserQuota {
  uid: number;
  rule: QuotaRule;
  period: Period;
  /** external wire bytes booked in the period */
  rxBytes: number;
  txBytes: number;
  adjustment: QuotaAdjustment;
  fired: Set<number>;
  /** the verdict this engine put in the kernel */
  enforced: QuotaAction | undefined;
}

const counted = (q: UserQuota) => {
  const rx = q.rxBytes - q.adjustment.resetRxBytes;
  const tx = q.txBytes - q.adjustment.resetTxBytes;
  return q.rule.direction === 'rx' ? rx : q.rule.direction === 'tx' ? tx : rx + tx;
};
const allowance = (q: UserQuota) => q.rule.limitBytes + q.adjustment.grantedBytes;
const sameAction = (a: QuotaAction, b: QuotaAction) => a.kind === b.kind && (a.kind === 'block' || a.bytesPerSecond === (b as typeof a).bytesPerSecond);

export function createQuotaEngine({ ledger, store, who, enforcer, alert, logger }: QuotaEngineOptions): QuotaEngine {
  let rules: readonly QuotaRule[] = [];
  /** uid → its quota; null: no rule applies (until the next rebuild) */
  let users = new Map<number, UserQuota | null>();
  let moved = new Set<UserQuota>();
  let rebuildAtMs = Infinity;
  /** period usage per kind, read from the ledger at the last rebuild */
  let loaded = new Map<PeriodKind, Map<number, { rxBytes: number; txBytes: number }>>();

  const verdictOf = (q: UserQuota): QuotaAction | undefined => (q.rule.action.kind === 'alert' || !enforcer ? undefined : q.rule.action);

  const stateOf = (q: UserQuota): QuotaState =>
    q.enforced?.kind === 'block' ? 'blocked' : q.enforced?.kind === 'throttle' ? 'throttled' : q.fired.size ? 'warned' : 'ok';

  const statusOf = (q: UserQuota): QuotaStatus => ({
    uid: q.uid,
    user: who.name(q.uid),
    match: q.rule.match,
    period: q.period,
    direction: q.rule.direction,
    action: q.rule.actionText,
    usedBytes: counted(q),
    limitBytes: allowance(q),
    grantedBytes: q.adjustment.grantedBytes,
    alerted: [...q.fired].sort((a, b) => a - b),
    state: stateOf(q),
  });

  /** the user's quota, made on first sight (their rule looked up once per rebuild) */
  const quotaOf = (uid: number, nowMs: number): UserQuota | undefined => {
    const known = users.get(uid);
    if (known !== undefined) return known ?? undefined;
    const rule = ruleFor(uid, rules, who);
    if (!rule) {
      users.set(uid, null);
      return undefined;
    }
    const period = periodAt(rule.period, nowMs);
    const usage = loaded.get(rule.period)?.get(uid);
    const q: UserQuota = {
      uid,
      rule,
      period,
      rxBytes: usage?.rxBytes ?? 0,
      txBytes: usage?.txBytes ?? 0,
      adjustment: store.adjustment(uid, period.startMs),
      fired: new Set(store.fired(uid, period.startMs)),
      enforced: undefined,
    };
    users.set(uid, q);
    return q;
  };

  const enforce = (q: UserQuota, want: QuotaAction | undefined) => {
    if (!enforcer) return;
    if (want && !(q.enforced && sameAction(q.enforced, want))) {
      enforcer.set({ uid: q.uid, action: want, untilMs: q.period.endMs });
      logger.warn({ quota: { uid: q.uid, user: who.name(q.uid), action: q.rule.actionText, until: new Date(q.period.endMs).toISOString() } }, `quota: ${q.rule.action.kind} of ${who.name(q.uid)} until the period ends`);
    } else if (!want && q.enforced) {
      enforcer.clear(q.uid);
      logger.info({ quota: { uid: q.uid, user: who.name(q.uid) } }, `quota: ${q.enforced.kind} of ${who.name(q.uid)} lifted`);
    }
    q.enforced = want;
  };

  /** thresholds newly reached go out (marked first), and the verdict follows the limit */
  const evaluate = (q: UserQuota, nowMs: number) => {
    const used = counted(q);
    const limit = allowance(q);
    const reached = q.rule.warnAt.filter((p) => !q.fired.has(p) && used * 100 >= p * limit);
    if (reached.length) {
      store.markFired(q.uid, q.period.startMs, reached, nowMs);
      for (const percent of reached) {
        q.fired.add(percent);
        alert({ uid: q.uid, user: who.name(q.uid), usedBytes: used, limitBytes: limit, percent, period: q.period, rule: q.rule });
      }
    }
    enforce(q, used >= limit ? verdictOf(q) : undefined);
  };

  /** the kernel's verdicts made to agree with the quotas (at the start, a reload, a period's end) */
  const reconcile = (nowMs: number) => {
    if (!enforcer) return;
    const inKernel = new Map(enforcer.list().map((v) => [v.uid, v]));
    for (const q of users.values()) {
      if (!q) continue;
      const v = inKernel.get(q.uid);
      inKernel.delete(q.uid);
      // a verdict of another period (or rule) goes; the current one is adopted as it is
      if (v && v.untilMs === q.period.endMs) q.enforced = v.action;
      else if (v) enforcer.clear(q.uid);
      evaluate(q, nowMs);
    }
    for (const uid of inKernel.keys()) {
      enforcer.clear(uid);
      logger.info({ quota: { uid } }, 'quota: a kernel verdict without a quota behind it (rule removed, or its period ended) lifted');
    }
  };

  const rebuild = (nowMs: number) => {
    users = new Map();
    moved = new Set();
    loaded = new Map();
    const kinds = new Set(rules.map((r) => r.period));
    for (const kind of kinds) {
      const period = periodAt(kind, nowMs);
      const usage = new Map<number, { rxBytes: number; txBytes: number }>();
      for (const t of ledger.totals(period.startMs, nowMs + 1)) {
        // the unattributed bytes are booked under a uid of their own: nobody's quota
        if (t.scope !== 'external' || t.uid === UNATTRIBUTED_UID) continue;
        const u = usage.get(t.uid) ?? { rxBytes: 0, txBytes: 0 };
        u.rxBytes += t.rxBytes;
        u.txBytes += t.txBytes;
        usage.set(t.uid, u);
      }
      loaded.set(kind, usage);
    }
    // the NSS group look-ups of this rebuild, once per group
    for (const usage of loaded.values()) for (const uid of usage.keys()) quotaOf(uid, nowMs);
    loaded = new Map();
    rebuildAtMs = Math.min(...[...kinds].map((k) => periodAt(k, nowMs).endMs));
    // rows of periods long gone (a month and a bit: the longest period, and a DST hour)
    store.forgetBefore(periodAt('month', nowMs).startMs - 32 * 86_400_000);
    reconcile(nowMs);
  };

  return {
    setRules(next, nowMs) {
      rules = next;
      if (!enforcer) {
        const enforcing = rules.filter((r) => r.action.kind !== 'alert').map((r) => r.match);
        if (enforcing.length) logger.warn({ rules: enforcing }, 'quota: this agent has no kernel enforcement; block and throttle rules only alert');
      } else {
        const exempt = [...new Set(rules.filter((r) => r.action.kind !== 'alert').flatMap((r) => r.exempt))];
        enforcer.setExemptions({ cidrs: exempt.filter((e) => e !== LOCAL_SERVICES), localServices: exempt.includes(LOCAL_SERVICES) });
      }
      rebuild(nowMs);
    },

    booked(nowMs, uid, scope, delta) {
      if (scope !== 'external' || rules.length === 0) return;
      const q = quotaOf(uid, nowMs);
      if (!q) return;
      q.rxBytes += delta.rxBytes;
      q.txBytes += delta.txBytes;
      moved.add(q);
    },

    check(nowMs) {
      if (nowMs >= rebuildAtMs) return rebuild(nowMs);
      for (const q of moved) evaluate(q, nowMs);
      moved.clear();
    },

    status(uid, nowMs) {
      const q = quotaOf(uid, nowMs);
      return q && statusOf(q);
    },

    statuses(nowMs) {
      for (const r of rules) if (r.matcher.kind === 'user') {
        const uid = who.uidOf(r.matcher.name);
        if (uid !== undefined) quotaOf(uid, nowMs);
      }
      return [...users.values()].filter((q) => q !== null).map(statusOf);
    },

    grant(uid, bytes, byUid, nowMs) {
      const q = quotaOf(uid, nowMs);
      if (!q) return undefined;
      q.adjustment = store.grant(uid, q.period.startMs, bytes);
      logger.info({ quota: { uid, user: who.name(uid), grantedBytes: bytes, totalGrantedBytes: q.adjustment.grantedBytes, by: byUid } }, `quota: ${bytes} bytes granted to ${who.name(uid)} for this period`);
      evaluate(q, nowMs);
      return statusOf(q);
    },

    reset(uid, byUid, nowMs) {
      const q = quotaOf(uid, nowMs);
      if (!q) return undefined;
      q.adjustment = store.reset(uid, q.period.startMs, q);
      q.fired.clear();
      logger.info({ quota: { uid, user: who.name(uid), by: byUid } }, `quota: the period of ${who.name(uid)} starts over`);
      evaluate(q, nowMs);
      return statusOf(q);
    },
  };
}
