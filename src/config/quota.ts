// `[[quota]]` rules (issue 14): who, per which calendar period, how many wire bytes, when
// to warn and what to do at the limit. Values stay the strings the admin wrote (so the
// generated documents show them as written); the parse functions here are the one
// reading of them, for the schema's checks and for the agent alike.
import { isIP } from 'node:net';
import { z } from 'zod';
import { integer, seconds, setting, text } from '../core/settings.js';
import { parseBytes, parseRate } from '../core/units.js';

export type QuotaMatch =
  | { kind: 'user'; name: string }
  | { kind: 'uid'; from: number; to: number }
  | { kind: 'group'; name: string }
  | { kind: 'all' };

/** "user:alice", "uid:2000-2999" (or "uid:2000"), "group:students", "all". */
export function parseMatch(match: string): QuotaMatch | undefined {
  if (match === 'all') return { kind: 'all' };
  const m = /^(user|group|uid):(.+)$/.exec(match);
  if (!m) return undefined;
  const [, kind, arg] = m as unknown as [string, 'user' | 'group' | 'uid', string];
  if (kind !== 'uid') return /^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}\$?$/.test(arg) ? { kind, name: arg } : undefined;
  const r = /^(\d{1,10})(?:-(\d{1,10}))?$/.exec(arg);
  if (!r) return undefined;
  const from = Number(r[1]);
  const to = Number(r[2] ?? r[1]);
  return from <= to && to <= 0xffff_fffe ? { kind: 'uid', from, to } : undefined;
}

export type QuotaRuleAction = { kind: 'alert' } | { kind: 'block' } | { kind: 'throttle'; bytesPerSecond: number };

/** "alert", "block", "throttle:8Mbit". */
export function parseAction(action: string): QuotaRuleAction | undefined {
  if (action === 'alert' || action === 'block') return { kind: action };
  const m = /^throttle:(.+)$/.exec(action);
  const rate = m ? parseRate(m[1]!) : undefined;
  return rate !== undefined && rate >= 1000 ? { kind: 'throttle', bytesPerSecond: rate } : undefined;
}

export const LOCAL_SERVICES = 'local-services';

/** "198.18.0.0/15", "2001:db8::/32", a single address, or "local-services". */
export function isExemption(entry: string): boolean {
  if (entry === LOCAL_SERVICES) return true;
  const [address, bits, ...rest] = entry.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || rest.length) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

const quotaHooksSchema = z
  .strictObject({
    exec: text()
      .describe('program run at each alert of the rule, without a shell nor arguments; its environment holds USER, UID, USED and LIMIT (bytes), PERCENT (the threshold reached), PERIOD (day, week, month), PERIOD_END (ISO-8601) and ACTION (as configured)')
      .meta({ examples: ['/usr/local/sbin/quota-notify'] }),
    timeout: setting(seconds(0.1, 600), 10, 'seconds a hook run may take; then it is killed and the run counts as failed'),
    retries: setting(integer(0, 10), 2, 'times a failed run (non-zero exit, killed, not startable) is tried again, 10 s and then 20 s, 40 s … later; each failure is logged'),
  })
  .describe("The alert hook of the [[quota]] rule above it (TOML: a [quota.hooks] table belongs to the latest [[quota]])");

const FORMS = {
  match: '"user:NAME", "uid:A-B" (or "uid:N"), "group:NAME" or "all"',
  limit: 'a byte count with its unit: "50GiB", "500MB", "10MiB"',
  action: '"alert", "block" or "throttle:RATE" with RATE as tc(8) writes it: "2Mbit", "500kbit", "1MiB/s" (at least 8kbit)',
  exempt: 'CIDR blocks ("198.18.0.0/15", "2001:db8::/32"), addresses, or "local-services"',
};

export const quotaRuleSchema = z
  .strictObject({
    match: z
      .string()
      .refine((m) => parseMatch(m) !== undefined, `expected ${FORMS.match}`)
      .describe(`whom the rule applies to: ${FORMS.match} (group: its members, by primary group or /etc/group). A user several rules match gets the most specific: user > uid range > group > all; among equals, the first in the file`)
      .meta({ examples: ['group:students'] }),
    period: setting(z.enum(['day', 'week', 'month']), 'month', "the calendar period the limit is for, in the agent's local time (TZ); a week starts on Monday"),
    limit: z
      .string()
      .refine((l) => (parseBytes(l) ?? 0) > 0, `expected ${FORMS.limit}`)
      .describe(`wire bytes (IP headers included, as on the wire) the user may move over external interfaces per period: ${FORMS.limit}`)
      .meta({ examples: ['50GiB'] }),
    direction: setting(z.enum(['both', 'rx', 'tx']), 'both', 'which bytes count against the limit: received and sent, received only, or sent only'),
    warn_at: setting(z.array(integer(1, 100)).min(0).max(10), [80, 100], 'percents of the limit at which an alert goes out (log line, hook, OTLP gauge), each once per period and user'),
    action: setting(
      z.string().refine((a) => parseAction(a) !== undefined, `expected ${FORMS.action}`),
      'alert',
      `what happens at 100 %: ${FORMS.action}; block and throttle hold until the period ends (the kernel enforces them; outside the exemptions)`,
    ),
    exempt: setting(
      z.array(z.string().refine(isExemption, `expected ${FORMS.exempt}`)).max(256),
      [],
      `destinations a block or throttle leaves alone: ${FORMS.exempt} = connections to this host's own listening services (the user's SSH login); they still count against the limit`,
    ),
    terminals: setting(z.boolean(), false, "also write each alert to the user's own terminals (their login sessions in utmp), as quota(1) warns; terminals with messages off (mesg n) are left alone"),
    hooks: quotaHooksSchema.optional(),
  })
  .describe('one quota rule');

export type QuotaRuleConfig = z.infer<typeof quotaRuleSchema>;

const sameExemptions = (a: readonly string[], b: readonly string[]) => [...a].sort().join(',') === [...b].sort().join(',');

/** `quota = [...]` of the configuration: the rules, checked as a set. */
export const quotaRulesSchema = z
  .array(quotaRuleSchema)
  .max(1000)
  .superRefine((rules, ctx) => {
    const seen = new Map<string, number>();
    rules.forEach((r, i) => {
      const first = seen.get(r.match);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'match'], message: `rule ${first + 1} already has match = "${r.match}": merge the two rules` });
      else seen.set(r.match, i);
    });
    // the kernel holds one exemption list for every blocked or throttled user
    const enforced = rules.map((r, i) => ({ r, i })).filter(({ r }) => r.action !== 'alert');
    for (const { r, i } of enforced.slice(1)) {
      if (!sameExemptions(r.exempt, enforced[0]!.r.exempt)) {
        ctx.addIssue({
          code: 'custom',
          path: [i, 'exempt'],
          message: `differs from rule ${enforced[0]!.i + 1}'s exempt list: the kernel keeps one exemption list for every blocked or throttled user, so every rule with a block or throttle action must list the same exemptions`,
        });
      }
    }
  })
  .optional()
  .describe('[[quota]] rules: a budget of wire bytes per user and calendar period, alerts at thresholds, and optionally a block or throttle at the limit (docs/quota.md); absent = no quotas');
