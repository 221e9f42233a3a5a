// One time rule for every command: times are read and shown in local time with its
// offset (or UTC with --utc); a bare date is local midnight in the host's (or TZ's) time
// zone, as `date -d 2026-11-27` reads it; `today`, `yesterday`, `this-month`
// name the start of that period; a duration (`1h30m`) means that long ago.
import { InvalidArgumentError, type Command } from 'commander';
import { parseDuration } from './format.js';

export interface TimeRule {
  utc: boolean;
}

/** Midnight starting the day of `ms` (local, or UTC). */
export function dayStart(ms: number, rule: TimeRule): number {
  const d = new Date(ms);
  if (rule.utc) return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

/** Midnight starting the month of `ms`. */
export function monthStart(ms: number, rule: TimeRule): number {
  const d = new Date(ms);
  if (rule.utc) return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  return new Date(d.getFullYear(), d.getMonth(), 1).getTime();
}

/** Midnight of the day `days` after the day of `ms` (calendar days: DST-safe). */
export function addDays(ms: number, days: number, rule: TimeRule): number {
  const d = new Date(ms);
  if (rule.utc) return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + days);
  return new Date(d.getFullYear(), d.getMonth(), d.getDate() + days).getTime();
}

export function addMonths(ms: number, months: number, rule: TimeRule): number {
  const d = new Date(ms);
  if (rule.utc) return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + months, 1);
  return new Date(d.getFullYear(), d.getMonth() + months, 1).getTime();
}

const QUARTER_HOUR = 900_000;

/** Whether the clock (local, or UTC) shows a whole hour at `ms`. */
const onTheHour = (ms: number, rule: TimeRule): boolean => {
  const d = new Date(ms);
  return rule.utc ? ms % 3_600_000 === 0 : d.getMinutes() === 0 && d.getSeconds() === 0 && d.getMilliseconds() === 0;
};

export type Period = 'hour' | 'day' | 'month';

/** Start of the period after the one holding `ms`. A DST change makes a local day 23 or
 *  25 hours long, and a local hour 0.5 to 2 hours (Lord Howe's half-hour change): each is
 *  still one period. Zone offsets are whole quarter hours, so the next whole local hour
 *  is at most 8 quarters on. */
export function nextPeriod(ms: number, period: Period, rule: TimeRule): number {
  if (period === 'month') return addMonths(ms, 1, rule);
  if (period === 'day') return addDays(ms, 1, rule);
  let t = ms - (ms % QUARTER_HOUR) + QUARTER_HOUR;
  for (let i = 0; i < 8 && !onTheHour(t, rule); i++) t += QUARTER_HOUR;
  return t;
}

/** The period starts strictly inside (fromMs, toMs), at most `max` of them: where a
 *  report cuts its range. */
export function periodEdges(fromMs: number, toMs: number, period: Period, rule: TimeRule, max: number): number[] {
  const edges: number[] = [];
  for (let e = nextPeriod(fromMs, period, rule); e < toMs && edges.length < max; e = nextPeriod(e, period, rule)) edges.push(e);
  return edges;
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const LOCAL_DATETIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/i;

/** A point in time, or undefined when `text` is not one. */
export function parseTime(text: string, nowMs: number, rule: TimeRule): number | undefined {
  const t = text.trim().toLowerCase();
  if (t === 'now') return nowMs;
  if (t === 'today') return dayStart(nowMs, rule);
  if (t === 'yesterday') return addDays(nowMs, -1, rule);
  if (t === 'this-month') return monthStart(nowMs, rule);
  const ago = parseDuration(t);
  if (ago !== undefined) return nowMs - ago;
  const local = DATE.exec(t) ?? LOCAL_DATETIME.exec(t);
  if (local) {
    const [y = 0, mo = 1, d = 1, h = 0, mi = 0, s = 0] = local.slice(1, 7).map((v) => (v === undefined ? undefined : Number(v)));
    const ms = Number((local[7] ?? '0').padEnd(3, '0'));
    return rule.utc ? Date.UTC(y, mo - 1, d, h, mi, s, ms) : new Date(y, mo - 1, d, h, mi, s, ms).getTime();
  }
  // with an explicit offset or Z: as written
  if (/(z|[+-]\d{2}:?\d{2})$/.test(t) && /^\d{4}-\d{2}-\d{2}t/.test(t)) {
    const ms = Date.parse(text.trim());
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

export const TIME_HELP = 'local time (or UTC with --utc): 2026-11-27, 2026-11-27T23:00, today, yesterday, this-month, a duration ago (1h30m, 2d), or with an offset (…T23:00+01:00)';

/** "2026-11-27T23:00:00+01:00" (local) or "2026-11-27T22:00:00Z" (--utc). */
export function formatTime(ms: number, rule: TimeRule): string {
  if (rule.utc) return new Date(ms).toISOString().replace(/\.000Z$/, 'Z');
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(Math.abs(n)).padStart(w, '0');
  const off = -d.getTimezoneOffset();
  const frac = d.getMilliseconds() ? `.${pad(d.getMilliseconds(), 3)}` : '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${frac}${off >= 0 ? '+' : '-'}${pad(Math.trunc(off / 60))}:${pad(off % 60)}`;
}

/** The range options every command that reads history takes. */
export interface TimeOptions {
  since?: string;
  from?: string;
  to?: string;
  utc?: boolean;
}

/** --since/--from/--to by the time rule; `fallback` when none is given. */
export function rangeOf(o: TimeOptions, rule: TimeRule, nowMs: number, fallback: string): { fromMs: number; toMs: number } {
  if (o.since !== undefined && o.from !== undefined) throw new InvalidArgumentError('use either --since or --from/--to, not both');
  const at = (flag: string, v: string) => {
    const ms = parseTime(v, nowMs, rule);
    if (ms === undefined) throw new InvalidArgumentError(`${flag} ${v}: expected ${TIME_HELP}`);
    return ms;
  };
  const fromMs = at(o.since !== undefined ? '--since' : '--from', o.since ?? o.from ?? fallback);
  const toMs = o.to !== undefined ? at('--to', o.to) : nowMs;
  if (toMs < fromMs) throw new InvalidArgumentError('the end of the range is before its start');
  return { fromMs, toMs };
}

export const timeOptions = (cmd: Command, what: string): Command =>
  cmd
    .option('--since <time>', `${what} from then until now: ${TIME_HELP}`)
    .option('--from <time>', 'start of the range (same forms as --since)')
    .option('--to <time>', 'end of the range (default now)')
    .option('--utc', 'read and show times in UTC instead of local time');
