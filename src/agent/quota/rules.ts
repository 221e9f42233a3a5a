// Which [[quota]] rule governs a user: the most specific that matches (user > uid range >
// group > all), the first in the file among equals. The rules come parsed from the
// configuration's strings once per reload.
import { parseAction, parseMatch, type QuotaMatch, type QuotaRuleAction, type QuotaRuleConfig } from '../../config/quota.js';
import { parseBytes } from '../../core/units.js';
import type { PeriodKind } from './period.js';

export interface QuotaRule {
  /** as written in the file: "group:students" */
  match: string;
  matcher: QuotaMatch;
  period: PeriodKind;
  limitBytes: number;
  direction: 'both' | 'rx' | 'tx';
  /** ascending */
  warnAt: number[];
  /** as written: "throttle:8Mbit" */
  actionText: string;
  action: QuotaRuleAction;
  exempt: string[];
  /** alerts go to the user's terminals too */
  terminals: boolean;
  hooks: { exec: string; timeoutMs: number; retries: number } | undefined;
}

export function compileRules(rules: readonly QuotaRuleConfig[] | undefined): QuotaRule[] {
  return (rules ?? []).map((r) => ({
    match: r.match,
    // the schema let only parseable strings through
    matcher: parseMatch(r.match)!,
    period: r.period,
    limitBytes: parseBytes(r.limit)!,
    direction: r.direction,
    warnAt: [...new Set(r.warn_at)].sort((a, b) => a - b),
    actionText: r.action,
    action: parseAction(r.action)!,
    exempt: r.exempt,
    terminals: r.terminals,
    hooks: r.hooks && { exec: r.hooks.exec, timeoutMs: r.hooks.timeout * 1000, retries: r.hooks.retries },
  }));
}

/** The NSS facts matching needs (the agent's cached look-ups). */
export interface Membership {
  name(uid: number): string;
  primaryGroup(uid: number): number | undefined;
  group(name: string): { gid: number; members: string[] } | undefined;
}

const SPECIFICITY: Record<QuotaMatch['kind'], number> = { user: 3, uid: 2, group: 1, all: 0 };

function matches(m: QuotaMatch, uid: number, who: Membership): boolean {
  switch (m.kind) {
    case 'all':
      return true;
    case 'uid':
      return uid >= m.from && uid <= m.to;
    case 'user':
      return who.name(uid) === m.name;
    case 'group': {
      const g = who.group(m.name);
      return g !== undefined && (who.primaryGroup(uid) === g.gid || g.members.includes(who.name(uid)));
    }
  }
}

export function ruleFor(uid: number, rules: readonly QuotaRule[], who: Membership): QuotaRule | undefined {
  let best: QuotaRule | undefined;
  for (const r of rules) {
    if ((best === undefined || SPECIFICITY[r.matcher.kind] > SPECIFICITY[best.matcher.kind]) && matches(r.matcher, uid, who)) best = r;
  }
  return best;
}
