// `quota`, `quota.grant`, `quota.reset`: users' quotas as their scope shows them, and the
// admins' two changes to a period (each logged by the agent with the admin's uid).
import type { Request } from './protocol.js';
import type { QuotaResult, QuotaRow } from './protocol.js';
import type { Directory, Scope } from './scope.js';
import { ControlError } from './server.js';

/** A user's quota as the agent knows it (its quota engine provides it). */
export interface QuotaFacts extends Omit<QuotaRow, 'period' | 'periodStart' | 'periodEnd'> {
  period: { kind: QuotaRow['period']; startMs: number; endMs: number };
}

/** What the control API asks of the agent's quotas. */
export interface QuotaControl {
  status(uid: number, nowMs: number): QuotaFacts | undefined;
  statuses(nowMs: number): QuotaFacts[];
  grant(uid: number, bytes: number, byUid: number, nowMs: number): QuotaFacts | undefined;
  reset(uid: number, byUid: number, nowMs: number): QuotaFacts | undefined;
}

export const ADMINS_ONLY = 'only root and members of control.admin_group may grant or reset quotas';

function row({ period, ...q }: QuotaFacts): QuotaRow {
  return { ...q, period: period.kind, periodStart: new Date(period.startMs).toISOString(), periodEnd: new Date(period.endMs).toISOString() };
}

const uidOf = (user: string, dir: Pick<Directory, 'userByName'>): number => {
  const uid = /^\d+$/.test(user) ? Number(user) : dir.userByName(user)?.uid;
  if (uid === undefined) throw new ControlError('no_such_user', `no such user: ${user}`);
  return uid;
};

type QuotaRequest = Extract<Request, { op: 'quota' | 'quota.grant' | 'quota.reset' }>;

export function quotaRequest(quotas: QuotaControl, dir: Pick<Directory, 'userByName'>, req: QuotaRequest, scope: Scope): QuotaResult {
  const now = Date.now();
  if (req.op === 'quota') {
    const wanted = scope.userFilter(req.user);
    // a caller who sees only themselves costs one look-up, not a walk over every quota
    const facts = scope.role === 'self' ? [quotas.status(scope.callerUid, now)].filter((q) => q !== undefined) : quotas.statuses(now);
    // an auditor sees the rule's kind only: "user:alice" or "uid:1234" would name the user
    const shown = (q: QuotaRow) => (scope.role === 'auditor' ? { ...q, match: q.match.split(':')[0]! } : q);
    const rows = scope.rows(facts.filter((q) => wanted(q.uid)).map(row)).map(shown);
    return { quotas: rows.sort((a, b) => b.usedBytes / b.limitBytes - a.usedBytes / a.limitBytes || a.uid - b.uid) };
  }
  if (scope.role !== 'admin') throw new ControlError('forbidden', ADMINS_ONLY);
  const uid = uidOf(req.user, dir);
  const done = req.op === 'quota.grant' ? quotas.grant(uid, req.bytes, scope.callerUid, now) : quotas.reset(uid, scope.callerUid, now);
  if (!done) throw new ControlError('no_quota', `no [[quota]] rule applies to ${req.user}`);
  return { quotas: [row(done)] };
}
