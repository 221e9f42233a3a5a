// `ubia users | units | procs | flows | status`: ask the agent, print a table, JSON or CSV (exact).
import { controlRequest } from '../control/client.js';
import type { CountedRange, FlowRow, FlowsResult, ProcessRow, ProcsResult, QuotaResult, QuotaRow, StatusResult, UnitRow, UnitsResult, UserTotals, UsersResult } from '../control/protocol.js';
import type { WorkloadGrouping } from '../core/workload.js';
import type { TrafficCounters } from '../kernel/types.js';
import { endpoint, protocolName } from './endpoints.js';
import { csvLines } from './csv.js';
import { formatTime, type TimeRule } from './when.js';
import { bytesColumns, counterColumns, humanBytes, humanRate, left, processName, right, table, type Column } from './format.js';

export type OutputFormat = 'table' | 'json' | 'csv';

export interface ViewOptions {
  socket: string;
  format: OutputFormat;
}

const COUNTERS = ['rxBytes', 'txBytes', 'rxPackets', 'txPackets', 'rxPayloadBytes', 'txPayloadBytes'] as const;

const width = () => process.stdout.columns ?? 200;
export const print = (lines: string[]): void => void process.stdout.write(`${lines.join('\n')}\n`);
export const printJson = (v: unknown): void => void process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);

/** "from A to B": the range the figures were summed over (whole ledger buckets), and the
 *  range asked for where that differs — the range printed is the range counted. */
export function countedSpan(r: CountedRange, asked: { fromMs: number; toMs: number }, rule: TimeRule): string {
  const [from, to] = [Date.parse(r.countedFrom), Date.parse(r.countedTo)];
  const span = `from ${formatTime(from, rule)} to ${formatTime(to, rule)}`;
  if (from === asked.fromMs && to === asked.toMs) return span;
  return `${span} (the whole ledger buckets holding ${formatTime(asked.fromMs, rule)} to ${formatTime(asked.toMs, rule)})`;
}

export async function showUsers(opts: ViewOptions & { fromMs: number; toMs: number; rule: TimeRule }): Promise<void> {
  const r = await controlRequest<UsersResult>(opts.socket, { op: 'users', from: opts.fromMs, to: opts.toMs });
  if (opts.format === 'json') return printJson(r);
  if (opts.format === 'csv') return print(csvLines<UserTotals>(['uid', 'user', ...COUNTERS], r.users));
  print([
    `usage ${countedSpan(r, opts, opts.rule)} (wire bytes; payload = what processes sent/received)`,
    '',
    ...table<UserTotals>(
      [
        left('USER', (u) => u.user),
        right('UID', (u) => String(u.uid)),
        ...counterColumns(),
      ],
      r.users,
      width(),
    ),
    ...(r.unattributed
      ? ['', `unattributed (no local socket owner): RX ${humanBytes(r.unattributed.rxBytes)}, TX ${humanBytes(r.unattributed.txBytes)}`]
      : []),
  ]);
}

export async function showUnits(opts: ViewOptions & { fromMs: number; toMs: number; rule: TimeRule; by: WorkloadGrouping; user: string | undefined }): Promise<void> {
  const r = await controlRequest<UnitsResult>(opts.socket, { op: 'units', from: opts.fromMs, to: opts.toMs, by: opts.by, user: opts.user });
  if (opts.format === 'json') return printJson(r);
  if (opts.format === 'csv') return print(csvLines<UnitRow>(['uid', 'user', 'unit', 'kind', 'jobId', 'containerId', 'rxRate', 'txRate', 'rxPayloadRate', 'txPayloadRate', ...COUNTERS], r.units));
  print([
    `usage per ${r.by} ${countedSpan(r, opts, opts.rule)} (wire bytes; payload = what processes sent/received; rates: the last poll)`,
    '',
    ...table<UnitRow>(
      [
        left('USER', (u) => u.user),
        left(r.by.toUpperCase(), (u) => u.unit),
        left('KIND', (u) => u.kind),
        right('RX/s', (u) => humanRate(u.rxRate)),
        right('TX/s', (u) => humanRate(u.txRate)),
        ...bytesColumns(),
        right('RX payload', (u) => humanBytes(u.rxPayloadBytes)),
        right('TX payload', (u) => humanBytes(u.txPayloadBytes)),
      ],
      r.units,
      width(),
    ),
  ]);
}

export async function showProcs(opts: ViewOptions & { user?: string }): Promise<void> {
  const r = await controlRequest<ProcsResult>(opts.socket, { op: 'procs', user: opts.user });
  if (opts.format === 'json') return printJson(r);
  if (opts.format === 'csv') return print(csvLines<ProcessRow>(['pid', 'uid', 'user', 'comm', 'rxRate', 'txRate', 'rxPayloadRate', 'txPayloadRate', ...COUNTERS], r.processes));
  print(
    table<ProcessRow>(
      [
        right('PID', (p) => String(p.pid)),
        left('USER', (p) => p.user),
        left('COMM', (p) => processName(p.pid, p.comm)),
        right('RX/s', (p) => humanRate(p.rxRate)),
        right('TX/s', (p) => humanRate(p.txRate)),
        ...bytesColumns(),
      ],
      r.processes,
      width(),
    ),
  );
}


function flowTable(rows: FlowRow[], extra: Column<FlowRow>[]): string[] {
  return table<FlowRow>(
    [
      left('PROTO', (f) => protocolName(f.protocol)),
      left('LOCAL', (f) => endpoint(f.localAddress, f.localPort, f.family)),
      left('REMOTE', (f) => endpoint(f.remoteAddress, f.remotePort, f.family)),
      left('USER', (f) => f.user),
      right('PID', (f) => String(f.pid)),
      left('COMM', (f) => f.comm),
      ...bytesColumns(),
      ...extra,
    ],
    rows,
    width(),
  );
}

const byEndNewestFirst = (a: FlowRow, b: FlowRow) => b.lastSeen.localeCompare(a.lastSeen);
const clock = (iso: string) => new Date(iso).toLocaleTimeString('en-GB', { hour12: false });

type FlowCsvRow = FlowRow & { state: 'active' | 'ended'; proto: string; local: string; remote: string };

/** a full table (65,536 flows, ≈ 23 MB) takes a few seconds to stream on a busy host */
const FLOWS_TIMEOUT_MS = 60_000;

export async function showFlows(opts: ViewOptions & { user?: string; limit?: number }): Promise<void> {
  // the agent keeps the `limit` flows with the most bytes of each table (so a reply stays
  // small); the ended ones are shown newest first
  const r = await controlRequest<FlowsResult>(opts.socket, { op: 'flows', user: opts.user, limit: opts.limit }, FLOWS_TIMEOUT_MS);
  const shown: FlowsResult = { ...r, ended: r.ended.slice().sort(byEndNewestFirst) };
  if (opts.format === 'json') return printJson(shown);
  if (opts.format === 'csv') {
    const rows = (state: 'active' | 'ended', fs: FlowRow[]): FlowCsvRow[] =>
      fs.map((f) => ({ ...f, state, proto: protocolName(f.protocol), local: endpoint(f.localAddress, f.localPort, f.family), remote: endpoint(f.remoteAddress, f.remotePort, f.family) }));
    return print(
      csvLines<FlowCsvRow>(
        ['state', 'proto', 'local', 'remote', 'uid', 'user', 'pid', 'comm', ...COUNTERS, 'firstSeen', 'lastSeen', 'cookie'],
        [...rows('active', shown.active), ...rows('ended', shown.ended)],
      ),
    );
  }
  const count = (n: number, total: number) => (n < total ? `${n} of ${total} (most bytes first; --limit)` : String(total));
  print([
    `active flows: ${count(shown.active.length, r.activeTotal)}`,
    ...flowTable(shown.active, []),
    '',
    `recently ended, newest first: ${count(shown.ended.length, r.endedTotal)}`,
    ...flowTable(shown.ended, [right('ENDED', (f) => clock(f.lastSeen))]),
  ]);
}

/** Users who found the kernel user table full: their traffic, payload included. */
const beyondUserTable = (b: TrafficCounters): string =>
  `            users beyond the user table (booked as unattributed): in ${humanBytes(b.rxBytes)} (payload ${humanBytes(b.rxPayloadBytes)}), out ${humanBytes(b.txBytes)} (payload ${humanBytes(b.txPayloadBytes)})`;

export async function showStatus(opts: ViewOptions): Promise<void> {
  const r = await controlRequest<StatusResult>(opts.socket, { op: 'status' });
  if (opts.format === 'json') return printJson(r);
  const h = r.meter.health;
  // null: not shown to non-admins (paths, host-wide totals)
  const unattributed = r.meter.interfaces?.reduce((s, i) => s + i.unattributed.rxBytes + i.unattributed.txBytes, 0);
  const admin = r.agent.you.admin;
  print([
    `agent:      running, pid ${r.agent.pid}, up ${r.agent.uptimeSeconds} s${admin ? `, config ${r.agent.configFile ?? '(built-in defaults)'}` : ''}`,
    `            poll every ${r.agent.pollIntervalSeconds} s, last ${r.agent.lastPollAt ?? 'never'}, loopback ${r.agent.countLoopback ? 'counted' : 'not counted'}`,
    `kernel:     ${r.meter.kernelRelease}, mode ${r.meter.mode}${r.meter.resumed ? ', resumed pinned state' : ''}${r.meter.pinDir ? ` (${r.meter.pinDir})` : ''}`,
    // [x] in use, [ ] this kernel has it but this mode does not use it, [-] this kernel lacks it
    ...r.meter.hooks.map((hk) => `  ${hk.active ? '[x]' : hk.available ? '[ ]' : '[-]'} ${hk.name}: ${hk.detail}`),
    `health:     overflows users ${h.overflows.users}, processes ${h.overflows.processes}, flows ${h.overflows.flows}, peers ${h.overflows.peers}, interfaces ${h.overflows.interfaces}; events dropped ${h.eventsDropped}`,
    ...(unattributed === undefined ? [] : [`            unattributed since start of metering: ${humanBytes(unattributed)}`]),
    ...(h.overflows.users > 0 && h.beyondUserTable ? [beyondUserTable(h.beyondUserTable)] : []),
    `ledger:     ${r.ledger.path === null ? '' : `${r.ledger.path}, ${humanBytes(r.ledger.sizeBytes ?? 0)}, `}last flush ${r.ledger.lastFlushAt ?? 'never'}${r.ledger.lastError ? `, ERROR: ${r.ledger.lastError}` : ''}`,
    `exporters:  ${r.exporters.length === 0 ? 'none configured' : ''}`,
    ...r.exporters.map((e) => `  ${e.name}: ${e.state}${e.detail ? ` — ${e.detail}` : ''} (queued ${e.queued}, dropped ${e.dropped})`),
  ]);
}

const percentOf = (q: QuotaRow) => `${Math.floor((q.usedBytes * 100) / q.limitBytes)} %`;

export async function showQuota(opts: ViewOptions & { user?: string }): Promise<void> {
  const r = await controlRequest<QuotaResult>(opts.socket, { op: 'quota', user: opts.user });
  if (opts.format === 'json') return printJson(r);
  if (opts.format === 'csv') return print(csvLines<QuotaRow>(['uid', 'user', 'match', 'period', 'periodStart', 'periodEnd', 'direction', 'action', 'usedBytes', 'limitBytes', 'grantedBytes', 'state'], r.quotas));
  if (r.quotas.length === 0) return print([opts.user ? `no quota applies to ${opts.user}` : 'no quota applies (to you, or to anyone with traffic this period)']);
  print(quotaTable(r.quotas));
}

function quotaTable(rows: QuotaRow[]): string[] {
  return table<QuotaRow>(
    [
      left('USER', (q) => q.user),
      right('UID', (q) => String(q.uid)),
      right('USED', (q) => humanBytes(q.usedBytes)),
      right('LIMIT', (q) => `${humanBytes(q.limitBytes)}${q.grantedBytes ? ' (granted +' + humanBytes(q.grantedBytes) + ')' : ''}`),
      right('%', percentOf),
      left('STATE', (q) => q.state),
      left('PERIOD ENDS', (q) => `${new Date(q.periodEnd).toLocaleString('sv-SE')} (${q.period})`),
      left('ACTION', (q) => q.action),
      left('RULE', (q) => q.match),
    ],
    rows,
    width(),
  );
}

/** `ubia quota grant|reset USER`: the change, then the user's quota as it is now. */
export async function changeQuota(opts: ViewOptions & { user: string; grantBytes?: number }): Promise<void> {
  const r = await controlRequest<QuotaResult>(
    opts.socket,
    opts.grantBytes === undefined ? { op: 'quota.reset', user: opts.user } : { op: 'quota.grant', user: opts.user, bytes: opts.grantBytes },
  );
  if (opts.format === 'json') return printJson(r);
  print(quotaTable(r.quotas));
}
