// `ubia flows` with any of --since/--from/--where/--group-by…: a query over the flow store
// in Flowy's stages (filter → group → group filter → order), printed as a table, --json or
// --csv. Without them program.ts shows the live flow table (views.ts).
import { InvalidArgumentError } from 'commander';
import { controlRequest } from '../control/client.js';
import { MAX_QUERY_ROWS, type FlowQueryResult } from '../control/protocol.js';
import { csvLines } from './csv.js';
import { humanBytes, left, right, table, type Column } from './format.js';
import { print, printJson, type OutputFormat } from './views.js';
import { formatTime, rangeOf, type TimeOptions, type TimeRule } from './when.js';

type Row = Record<string, string | number | null>;

/** Time fields of query rows (ms since the epoch) shown by the time rule. */
const TIME_FIELDS = new Set(['first', 'last', 'start_ms', 'end_ms']);

/** Times as text by the time rule; everything else as it came. */
const withTimes = (rows: Row[], rule: TimeRule): Row[] =>
  rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, TIME_FIELDS.has(k) && typeof v === 'number' ? formatTime(v, rule) : v])));

const num = (f: string) => (r: Row) => String(r[f] ?? '');
const bytes = (f: string) => (r: Row) => humanBytes(Number(r[f] ?? 0));
const endpoint = (addr: string, port: string | number | null) => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);

function groupColumns(keys: string[], remotes: boolean): Column<Row>[] {
  return [
    ...keys.map((k) => left<Row>(k.toUpperCase(), (r) => String(r[k] ?? '-'))),
    right('FLOWS', num('flows')),
    right('RX', bytes('rx_bytes')),
    right('TX', bytes('tx_bytes')),
    right('RX pkts', num('rx_packets')),
    right('TX pkts', num('tx_packets')),
    right('RX payload', bytes('rx_payload')),
    right('TX payload', bytes('tx_payload')),
    ...(remotes ? [right<Row>('REMOTES', num('remotes'))] : []),
    left('FIRST', (r) => String(r.first)),
    left('LAST', (r) => String(r.last)),
  ];
}

const RECORD_COLUMNS: Column<Row>[] = [
  left('START', (r) => String(r.start_ms)),
  left('END', (r) => String(r.end_ms)),
  left('PROTO', (r) => String(r.protocol)),
  left('LOCAL', (r) => endpoint(String(r.local_addr), r.local_port)),
  left('REMOTE', (r) => endpoint(String(r.remote_addr), r.remote_port)),
  left('USER', (r) => String(r.user)),
  right('PID', num('pid')),
  left('COMM', (r) => String(r.comm)),
  right('RX', bytes('rx_bytes')),
  right('TX', bytes('tx_bytes')),
];

export const QUERY_DEFAULT_LIMIT = 20;

export interface FlowQueryOptions extends TimeOptions {
  user?: string;
  where?: string;
  groupBy?: string;
  having?: string;
  order?: string;
  limit?: number;
  remotes?: boolean;
}

/** A range or any query stage asks the flow history; else the live table answers. */
export const isQuery = (o: FlowQueryOptions): boolean =>
  [o.since, o.from, o.to, o.where, o.groupBy, o.having, o.order, o.remotes].some((v) => v !== undefined);

export const FLOWS_EXAMPLES = `
Without a range or a query: the live flow table (active and recently ended flows).
With one: the flow store, in stages — filter records (--where), group them (--group-by),
filter groups (--having), order and cut (--order, --limit). A record counts in the range
its period ENDS in.

Filter terms (nfdump/tcpdump style; and/or/not, parentheses; quote values with spaces):
  proto tcp|udp|icmp|N, tcp, udp, [src|dst|local|remote] host ADDR, [..] net CIDR,
  [..] port N, ipv4, ipv6, user NAME|UID, uid N, pid N, comm NAME, exe PATH, unit NAME
  (src = the local end of the socket, dst = the remote end; unit: as ubia units names it)
Group keys: user, uid, pid, comm, exe, unit, proto, local, remote, remote/24 (IPv6 /64),
  remote/24/48, local_port, remote_port
Aggregates (--having, --order): bytes, rx_bytes, tx_bytes, packets, rx_packets,
  tx_packets, payload, rx_payload, tx_payload, flows, remotes (with --remotes), first, last
  (amounts take K/M/G/T = 1000s or KiB/MiB/GiB = 1024s)

Examples:
  ubia flows
  ubia flows --since 1d --where 'proto udp and port 53 and not user root' \\
             --group-by user,remote/24 --having 'bytes > 10M' --order -bytes --limit 20
  ubia flows --since today --group-by user,remote_port --csv
  ubia flows --since 1h30m --where 'dst net 198.18.0.0/15' --limit 50 --json
  ubia flows --from 2026-11-27 --to 2026-11-28 --group-by comm,exe --utc`;

export async function runFlowQuery(o: FlowQueryOptions & { socket: string; format: OutputFormat }): Promise<void> {
  const limit = o.limit ?? QUERY_DEFAULT_LIMIT;
  if (limit > MAX_QUERY_ROWS) throw new InvalidArgumentError(`--limit: at most ${MAX_QUERY_ROWS} rows from the flow history (got ${limit})`);
  const rule = { utc: !!o.utc };
  const { fromMs, toMs } = rangeOf(o, rule, Date.now(), 'today');
  const r = await controlRequest<FlowQueryResult>(o.socket, {
    op: 'flows.query', from: fromMs, to: toMs, user: o.user, where: o.where, remotes: o.remotes, groupBy: o.groupBy, having: o.having, order: o.order, limit,
  }, 60_000);
  const rows = withTimes(r.rows, rule);
  const range = { from: formatTime(fromMs, rule), to: formatTime(toMs, rule) };
  if (o.format === 'json') return printJson({ ...range, keys: r.keys, rows });
  if (o.format === 'csv') return print(csvLines(Object.keys(rows[0] ?? {}), rows));
  const columns = r.keys.length ? groupColumns(r.keys, 'remotes' in (r.rows[0] ?? {})) : RECORD_COLUMNS;
  const what = r.keys.length ? `${rows.length} groups by ${r.keys.join(', ')}` : `${rows.length} flow records`;
  print([`${what}, records ending from ${range.from} to ${range.to} (wire bytes)`, '', ...table(columns, rows, process.stdout.columns ?? 200)]);
}
