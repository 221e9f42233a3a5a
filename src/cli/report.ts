// `ubia report`: per-user totals over a range — the figures `ubia users` gives — each
// broken down by hour, day, month or unit (the ledger), or by process, remote network or
// port (the flow store), as a table, --json or --csv. Every breakdown adds up to the user's
// total exactly: the agent adds the rows that make it so (other, unrecorded).
import { InvalidArgumentError } from 'commander';
import { controlRequest } from '../control/client.js';
import { MAX_REPORT_PERIODS, type ReportBreakdown, type ReportResult, type ReportRow, type ReportUser } from '../control/protocol.js';
import type { TrafficCounters } from '../core/counters.js';
import { csvLines } from './csv.js';
import { counterColumns, humanBytes, left, table, type Column } from './format.js';
import { countedSpan, print, printJson, type OutputFormat } from './views.js';
import { formatTime, periodEdges, rangeOf, type Period, type TimeOptions, type TimeRule } from './when.js';

export const REPORT_BY = ['user', 'hour', 'day', 'month', 'process', 'remote', 'port', 'unit'] as const;
export type ReportBy = (typeof REPORT_BY)[number];

export interface ReportOptions extends TimeOptions {
  by: ReportBy;
  user?: string;
  top?: number;
}

const PERIODS: readonly string[] = ['hour', 'day', 'month'] satisfies Period[];
const isPeriod = (by: ReportBy): by is Period => PERIODS.includes(by);

/** The key columns of each breakdown, as the agent names them. */
const KEYS: Record<ReportBreakdown, string[]> = { user: [], time: ['start'], process: ['comm', 'exe'], remote: ['network'], port: ['proto', 'port'], unit: ['unit'] };
/** how a note row reads: `unrecorded` is what the flow store lacks, or by unit what the
 *  ledger's workload buckets lack (a ledger older than them) */
const noteText = (note: NonNullable<ReportRow['note']>, by: ReportBreakdown): string =>
  note === 'other' ? '(other)' : by === 'unit' ? '(no unit recorded)' : '(not in flow records)';
const COUNTER_FIELDS = ['rxBytes', 'txBytes', 'rxPackets', 'txPackets', 'rxPayloadBytes', 'txPayloadBytes'];

export const REPORT_EXAMPLES = `
Breakdowns (--by): user (totals only), hour, day, month (local periods, or UTC with
--utc; from the ledger), unit (systemd unit, Slurm job, container, as \`ubia units\`
names them; from the ledger), process (command and executable path), remote (remote
network: IPv4 /24, IPv6 /64), port (protocol and remote port) — the last three from the
flow store ([history]). Each user's rows add up exactly to their total, the figure
\`ubia users\` gives for the same range: "(other)" sums the rows past --top,
"(not in flow records)" is what the flow store holds no record of for the range (flows
whose records end outside it, or traffic before the store was on; negative when records
ending in the range began before it). The ledger sums whole minutes (hours or days for
older data): the range printed is the one summed, the range asked for widened to them.

Examples:
  ubia report --since this-month --by day
  ubia report --from 2026-11-01 --to 2026-12-01 --by process --top 5 --csv
  ubia report --since 7d --by remote --user alice --json
  ubia report --since yesterday --to today --by hour --utc`;

/** A line of the table or CSV: a user's total (no key) or one of its rows. */
type Line = TrafficCounters & { user: string; uid: number; key: ReportRow['key']; note?: string };

/** The reply with its times as the rule shows them (local with offset, or UTC). */
const withTimes = (users: ReportUser[], rule: TimeRule): ReportUser[] =>
  users.map((u) => ({ ...u, rows: u.rows.map((row) => ('start' in row.key ? { ...row, key: { start: formatTime(Date.parse(String(row.key.start)), rule) } } : row)) }));

const rowLines = (u: ReportUser, by: ReportBreakdown): Line[] => u.rows.map((row) => ({ ...row, user: u.user, uid: u.uid, ...(row.note ? { note: noteText(row.note, by) } : {}) }));
const totalLine = (u: ReportUser): Line => ({ ...u, key: {} });

export async function runReport(o: ReportOptions & { socket: string; format: OutputFormat }): Promise<void> {
  const rule = { utc: !!o.utc };
  const { fromMs, toMs } = rangeOf(o, rule, Date.now(), 'today');
  const edges = isPeriod(o.by) ? periodEdges(fromMs, toMs, o.by, rule, MAX_REPORT_PERIODS) : [];
  if (edges.length >= MAX_REPORT_PERIODS) throw new InvalidArgumentError(`--by ${o.by}: more than ${MAX_REPORT_PERIODS} periods in this range; take a shorter range or a longer period`);
  const by: ReportBreakdown = isPeriod(o.by) ? 'time' : o.by;
  const r = await controlRequest<ReportResult>(o.socket, { op: 'report', from: fromMs, to: toMs, by, edges, user: o.user, top: o.top }, 60_000);
  const range = { from: formatTime(fromMs, rule), to: formatTime(toMs, rule), countedFrom: formatTime(Date.parse(r.countedFrom), rule), countedTo: formatTime(Date.parse(r.countedTo), rule) };
  const users = withTimes(r.users, rule);
  if (o.format === 'json') return printJson({ ...range, by: o.by, users, unattributed: r.unattributed });
  const keys = KEYS[by];
  if (o.format === 'csv') {
    // the rows alone (a user's total is their sum), or the totals when there are none
    const flat = (by === 'user' ? users.map(totalLine) : users.flatMap((u) => rowLines(u, by))).map((l) => ({ ...l, ...l.key, note: l.note ?? '' }));
    return print(csvLines<Record<string, unknown>>(['uid', 'user', ...keys, ...(by === 'user' ? [] : ['note']), ...COUNTER_FIELDS], flat));
  }
  const isTotal = (l: Line) => Object.keys(l.key).length === 0;
  const keyCell = (l: Line, k: string) => (isTotal(l) ? (k === keys[0] ? 'total' : '') : l.note !== undefined ? (k === keys[0] ? l.note : '') : String(l.key[k] ?? '-'));
  const columns: Column<Line>[] = [
    left('USER', (l) => (isTotal(l) ? l.user : '')),
    ...keys.map((k) => left<Line>((k === 'start' ? o.by : k).toUpperCase(), (l) => keyCell(l, k))),
    ...counterColumns<Line>(),
  ];
  print([
    `usage by ${o.by} ${countedSpan(r, { fromMs, toMs }, rule)} (wire bytes; payload = what processes sent/received; rows add up to each user's total)`,
    '',
    ...table(columns, users.flatMap((u) => [totalLine(u), ...rowLines(u, by)]), process.stdout.columns ?? 200),
    ...(r.unattributed ? ['', `unattributed (no local socket owner): RX ${humanBytes(r.unattributed.rxBytes)}, TX ${humanBytes(r.unattributed.txBytes)}`] : []),
  ]);
}
