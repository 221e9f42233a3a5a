// The flow query language, in Flowy's stages: filter the records (--where), group them
// (--group-by), filter the groups (--having), order and cut (--order, --limit). The
// filter reads like nfdump's and tcpdump's (`proto udp and dst port 53`, `net
// 198.18.0.0/15`, `not`, parentheses) with ubia's own fields (`user alice`, `uid 1001`,
// `comm rsync`). Everything compiles to ONE SQL statement whose user-supplied values are
// all bound parameters: no input is ever spliced into the SQL text.
import { addressToBigInt, prefixMask, v4PrefixMask } from './address.js';
import { Cursor, parseAmount, QueryError, tokenize } from './tokens.js';

export { QueryError } from './tokens.js';

/** A bound value: numbers bind as DOUBLE, strings as VARCHAR, bigints as UHUGEINT. */
export type Param = number | string | bigint;

interface Sql {
  text: string;
  params: Param[];
}

const sql = (text: string, ...params: Param[]): Sql => ({ text, params });
const join = (parts: Sql[], sep: string): Sql => ({ text: parts.map((p) => p.text).join(sep), params: parts.flatMap((p) => p.params) });

export const PROTOCOLS: Record<string, number> = { icmp: 1, tcp: 6, udp: 17, icmp6: 58, sctp: 132 };

// ---- filter: nfdump/tcpdump-style primitives over one flow record -------------------

type Side = 'local' | 'remote' | 'either';
const SIDES: Record<string, Side> = { src: 'local', local: 'local', dst: 'remote', remote: 'remote' };

function integer(c: Cursor, keyword: string, max: number): number {
  const t = c.next('a number');
  if (!/^\d+$/.test(t.text)) throw new QueryError(c.option, `${keyword}: expected a number`, t.column);
  const n = Number(t.text);
  if (n > max) throw new QueryError(c.option, `${keyword}: ${t.text} is out of range (0 to ${max})`, t.column);
  return n;
}

function word(c: Cursor, keyword: string, what: string): string {
  const t = c.next(what);
  if (['and', 'or', 'not', '(', ')', '!'].includes(t.text.toLowerCase())) throw new QueryError(c.option, `${keyword}: expected ${what}`, t.column);
  return t.text;
}

const onSide = (side: Side, test: (col: 'local' | 'remote') => Sql): Sql =>
  side === 'either' ? { ...join([test('local'), test('remote')], ' OR '), text: `(${test('local').text} OR ${test('remote').text})` } : test(side);

/** A uid, or a name looked up among the stored users (not joined to every row). */
const byUser = (nameOrUid: string): Sql =>
  /^\d+$/.test(nameOrUid) ? sql('uid = ?', Number(nameOrUid)) : sql('uid IN (SELECT uid FROM users WHERE name = ?)', nameOrUid);

function primitive(c: Cursor): Sql {
  const first = c.next('a filter term such as "proto udp", "port 53", "user alice"');
  const key = first.text.toLowerCase();
  const side = SIDES[key];
  if (side !== undefined) {
    const t = c.next('host, net or port after the direction');
    const what = t.text.toLowerCase();
    if (what === 'host' || what === 'net' || what === 'port') return sideTerm(c, what, side, `${key} ${what}`);
    throw new QueryError(c.option, `${key}: expected host, net or port`, t.column);
  }
  if (key === 'host' || key === 'net' || key === 'port') return sideTerm(c, key, 'either', key);
  if (key in PROTOCOLS) return sql('protocol = ?', PROTOCOLS[key]!);
  switch (key) {
    case 'proto': {
      const t = c.next('a protocol');
      const n = PROTOCOLS[t.text.toLowerCase()] ?? (/^\d+$/.test(t.text) && Number(t.text) <= 255 ? Number(t.text) : undefined);
      if (n === undefined) throw new QueryError(c.option, `proto: expected tcp, udp, icmp, icmp6, sctp or a number from 0 to 255`, t.column);
      return sql('protocol = ?', n);
    }
    case 'inet':
    case 'ipv4':
      return sql('family = ?', 4);
    case 'inet6':
    case 'ipv6':
      return sql('family = ?', 6);
    case 'user': {
      const name = word(c, 'user', 'a user name or uid');
      return byUser(name);
    }
    case 'uid':
      return sql('uid = ?', integer(c, 'uid', 2 ** 32 - 1));
    case 'pid':
      return sql('pid = ?', integer(c, 'pid', 2 ** 32 - 1));
    case 'comm':
      return sql('comm = ?', word(c, 'comm', 'a command name'));
    case 'exe':
      return sql('exe = ?', word(c, 'exe', 'an executable path'));
    case 'unit':
      return sql('unit = ?', word(c, 'unit', 'a unit, job step or container name (ubia units)'));
  }
  throw new QueryError(c.option, `unknown term "${first.text}" (try proto, host, net, port, src/dst, user, uid, pid, comm, exe, unit)`, first.column);
}

function sideTerm(c: Cursor, what: 'host' | 'net' | 'port', side: Side, label: string): Sql {
  if (what === 'port') {
    const port = integer(c, label, 65535);
    return onSide(side, (col) => sql(`${col}_port = ?`, port));
  }
  const t = c.next(what === 'host' ? 'an address' : 'a network such as 198.18.0.0/15');
  if (what === 'host') {
    const addr = addressToBigInt(t.text);
    if (addr === undefined) throw new QueryError(c.option, `${label}: expected an IPv4 or IPv6 address`, t.column);
    return onSide(side, (col) => sql(`${col}_addr = ?`, addr));
  }
  const [base, bitsText] = t.text.split('/');
  const addr = addressToBigInt(base ?? '');
  const v4 = base?.includes('.') && !base.includes(':');
  const max = v4 ? 32 : 128;
  const bits = bitsText === undefined ? max : /^\d+$/.test(bitsText) ? Number(bitsText) : NaN;
  if (addr === undefined || !(bits <= max)) throw new QueryError(c.option, `${label}: expected a network such as 198.18.0.0/15 or 2001:db8::/32`, t.column);
  const mask = v4 ? v4PrefixMask(bits) : prefixMask(bits);
  return onSide(side, (col) => sql(`(${col}_addr & ?) = ?`, mask, addr & mask));
}

/** A boolean expression of `term` joined by and/or/not and parentheses (both stages use it). */
function expression(c: Cursor, term: (c: Cursor) => Sql): Sql {
  const or = (): Sql => {
    const parts = [and()];
    while (c.accept('or', '||')) parts.push(and());
    return parts.length === 1 ? parts[0]! : { ...join(parts, ' OR '), text: `(${parts.map((p) => p.text).join(' OR ')})` };
  };
  const and = (): Sql => {
    const parts = [not()];
    while (c.accept('and', '&&')) parts.push(not());
    return parts.length === 1 ? parts[0]! : { ...join(parts, ' AND '), text: `(${parts.map((p) => p.text).join(' AND ')})` };
  };
  const not = (): Sql => {
    if (c.accept('not', '!')) {
      const inner = not();
      return { text: `NOT ${inner.text}`, params: inner.params };
    }
    if (c.accept('(')) {
      const inner = or();
      const close = c.peek();
      if (close?.text !== ')') throw c.fail('expected ")"');
      c.next(')');
      return inner; // compound expressions come parenthesized already
    }
    return term(c);
  };
  const out = or();
  if (!c.done()) throw c.fail(`expected "and", "or" or the end, not "${c.peek()!.text}"`);
  return out;
}

const cursor = (option: string, text: string) => new Cursor(option, tokenize(option, text), text.length + 1);

/** --where TEXT → a SQL condition over the flows table. */
export function parseFilter(text: string): Sql {
  return expression(cursor('--where', text), primitive);
}

// ---- grouping, aggregates, group filter, order ---------------------------------------

/** What each group reports: bytes and packets per direction (wire and payload), flows,
 *  distinct remote addresses, first and last seen. `remotes` only when asked for (see
 *  FlowQuery.remotes): a distinct count keeps a set per group, 5× the cost of the rest
 *  together over 10 million records (bench/query.ts). */
export const AGGREGATES = {
  bytes: 'SUM(rx_bytes + tx_bytes)',
  rx_bytes: 'SUM(rx_bytes)',
  tx_bytes: 'SUM(tx_bytes)',
  packets: 'SUM(rx_packets + tx_packets)',
  rx_packets: 'SUM(rx_packets)',
  tx_packets: 'SUM(tx_packets)',
  payload: 'SUM(rx_payload_bytes + tx_payload_bytes)',
  rx_payload: 'SUM(rx_payload_bytes)',
  tx_payload: 'SUM(tx_payload_bytes)',
  flows: 'COUNT(*)::DOUBLE',
  remotes: 'COUNT(DISTINCT remote_addr)::DOUBLE',
  first: 'MIN(start_ms)',
  last: 'MAX(end_ms)',
} as const;
export type Aggregate = keyof typeof AGGREGATES;

/** A group key: the column name it has in results and how it is computed. */
export interface GroupKey {
  name: string;
  /** user: grouped by uid, named afterwards (a group-by over 200 uids is cheaper than
   *  joining every row to its name and hashing strings) */
  kind: 'text' | 'number' | 'address' | 'protocol' | 'user';
  expr: Sql;
}

const SIMPLE_KEYS: Record<string, Omit<GroupKey, 'expr'> & { column: string }> = {
  user: { name: 'user', kind: 'user', column: 'uid' },
  uid: { name: 'uid', kind: 'number', column: 'uid' },
  pid: { name: 'pid', kind: 'number', column: 'pid' },
  comm: { name: 'comm', kind: 'text', column: 'comm' },
  exe: { name: 'exe', kind: 'text', column: 'exe' },
  unit: { name: 'unit', kind: 'text', column: 'unit' },
  proto: { name: 'proto', kind: 'protocol', column: 'protocol' },
  local_port: { name: 'local_port', kind: 'number', column: 'local_port' },
  remote_port: { name: 'remote_port', kind: 'number', column: 'remote_port' },
};

/** "user", "remote/24" (IPv4 /24, IPv6 /64), "remote/24/48" (IPv6 /48), "remote_port", … */
function groupKey(c: Cursor): GroupKey {
  const t = c.next('a field to group by');
  const [field, v4Text, v6Text, extra] = t.text.toLowerCase().split('/');
  const simple = SIMPLE_KEYS[field!];
  if (simple && v4Text === undefined) return { name: simple.name, kind: simple.kind, expr: sql(simple.column) };
  if ((field === 'local' || field === 'remote') && extra === undefined) {
    if (v4Text === undefined) return { name: field, kind: 'address', expr: sql(`${field}_addr`) };
    const v4 = Number(v4Text);
    const v6 = v6Text === undefined ? 64 : Number(v6Text);
    if (!(Number.isInteger(v4) && v4 >= 0 && v4 <= 32 && Number.isInteger(v6) && v6 >= 0 && v6 <= 128)) {
      throw new QueryError(c.option, `${field}: expected ${field}/V4 or ${field}/V4/V6 with V4 from 0 to 32 and V6 from 0 to 128`, t.column);
    }
    return {
      name: t.text.toLowerCase(),
      kind: 'address',
      // an IPv4 peer of a dual-stack socket is IPv4 too (::ffff:a.b.c.d)
      expr: sql(`(${field}_addr & CASE WHEN (${field}_addr >> 32) = 65535 THEN ?::UHUGEINT ELSE ?::UHUGEINT END)`, v4PrefixMask(v4), prefixMask(v6)),
    };
  }
  throw new QueryError(c.option, `unknown field "${t.text}" (try ${Object.keys(SIMPLE_KEYS).join(', ')}, local, remote, remote/24)`, t.column);
}

function list<T>(c: Cursor, item: (c: Cursor) => T): T[] {
  const out = [item(c)];
  while (c.accept(',')) out.push(item(c));
  if (!c.done()) throw c.fail(`expected "," or the end, not "${c.peek()!.text}"`);
  return out;
}

export function parseGroupBy(text: string): GroupKey[] {
  const keys = list(cursor('--group-by', text), groupKey);
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k.name)) throw new QueryError('--group-by', `"${k.name}" is listed twice`, undefined);
    seen.add(k.name);
  }
  return keys;
}

const COMPARISONS: Record<string, string> = { '>': '>', '>=': '>=', '<': '<', '<=': '<=', '=': '=', '==': '=', '!=': '<>' };

function aggregateName(c: Cursor, what: string): Aggregate {
  const t = c.next(what);
  const name = t.text.toLowerCase();
  if (!(name in AGGREGATES)) throw new QueryError(c.option, `unknown aggregate "${t.text}" (try ${Object.keys(AGGREGATES).join(', ')})`, t.column);
  return name as Aggregate;
}

function comparison(c: Cursor): Sql {
  const agg = aggregateName(c, 'an aggregate such as bytes or flows');
  const op = c.next('a comparison (>, >=, <, <=, =, !=)');
  const cmp = COMPARISONS[op.text];
  if (!cmp) throw new QueryError(c.option, `${agg}: expected a comparison (>, >=, <, <=, =, !=)`, op.column);
  const v = c.next('a number');
  const amount = parseAmount(v.text);
  if (amount === undefined) throw new QueryError(c.option, `${agg}: expected a number such as 10M or 1.5GiB`, v.column);
  return sql(`${AGGREGATES[agg]} ${cmp} ?`, amount);
}

/** --having TEXT → a SQL condition over the groups' aggregates. */
export function parseHaving(text: string): Sql {
  return expression(cursor('--having', text), comparison);
}

export interface OrderTerm {
  name: string;
  descending: boolean;
}

/** --order "-bytes,user": names of aggregates or group keys; "-" sorts descending. */
export function parseOrder(text: string, allowed: string[]): OrderTerm[] {
  return list(cursor('--order', text), (c) => {
    const t = c.next('a field to order by');
    const descending = t.text.startsWith('-');
    const name = t.text.replace(/^[-+]/, '').toLowerCase();
    if (!allowed.includes(name)) throw new QueryError(c.option, `cannot order by "${name}" here (try ${allowed.join(', ')})`, t.column);
    return { name, descending };
  });
}

// ---- the whole query -----------------------------------------------------------------

export interface FlowQuery {
  fromMs: number;
  toMs: number;
  where?: string;
  groupBy?: string;
  having?: string;
  order?: string;
  limit: number;
  /** only these uids' flows (the ones a caller who is not an admin may see) */
  uids?: readonly number[];
  /** only this user's flows (name or uid), as asked for with --user */
  user?: string;
  /** count distinct remote addresses per group (also when --having/--order name it) */
  remotes?: boolean;
}

/** Columns of a record when nothing is grouped. */
export const RECORD_FIELDS = [
  'start_ms', 'end_ms', 'uid', 'user', 'pid', 'comm', 'exe', 'unit', 'protocol', 'family', 'local_addr', 'local_port',
  'remote_addr', 'remote_port', 'rx_bytes', 'tx_bytes', 'rx_packets', 'tx_packets', 'rx_payload_bytes', 'tx_payload_bytes',
] as const;
const RECORD_ORDER: Record<string, string> = {
  start: 'start_ms', end: 'end_ms', user: '"user"', uid: 'uid', pid: 'pid', comm: 'comm', unit: 'unit', proto: 'protocol',
  local_port: 'local_port', remote_port: 'remote_port', bytes: '(rx_bytes + tx_bytes)', rx_bytes: 'rx_bytes', tx_bytes: 'tx_bytes',
  packets: '(rx_packets + tx_packets)',
};

/** The rows alone when no name or program is asked for: the view that joins them in costs
 *  a hash probe per row (the texts tested are our own SQL; user values are parameters). */
const source = (...parts: Sql[]) => (parts.some((p) => /"user"|\bcomm\b|\bexe\b|\bunit\b/.test(p.text)) ? 'flow_records' : 'flows');

export interface CompiledQuery {
  sql: string;
  params: Param[];
  /** the group keys (empty: the rows are records) */
  keys: GroupKey[];
}

/** The filter's stages as one statement. Records count in a range when they END in it
 *  (each record is a period of one flow, so adjacent ranges never count one twice). */
export function compileQuery(q: FlowQuery): CompiledQuery {
  const conditions: Sql[] = [sql('end_ms >= ? AND end_ms < ?', q.fromMs, q.toMs)];
  if (q.uids !== undefined) conditions.push(q.uids.length === 0 ? sql('false') : sql(`uid IN (${q.uids.map(() => '?').join(', ')})`, ...q.uids));
  if (q.user !== undefined) conditions.push(byUser(q.user));
  if (q.where?.trim()) conditions.push(parseFilter(q.where));
  const where = join(conditions, ' AND ');
  const limit = sql(' LIMIT ?', q.limit);

  if (!q.groupBy?.trim()) {
    if (q.having?.trim()) throw new QueryError('--having', 'filters groups: give --group-by too', undefined);
    const order = parseOrder(q.order ?? '-end', Object.keys(RECORD_ORDER));
    const by = order.map((o) => `${RECORD_ORDER[o.name]} ${o.descending ? 'DESC' : 'ASC'}`).join(', ');
    const body = join([sql(`SELECT ${RECORD_FIELDS.map((f) => (f === 'user' ? '"user"' : f)).join(', ')} FROM flow_records WHERE `), where, sql(` ORDER BY ${by}`), limit], '');
    return { sql: body.text, params: body.params, keys: [] };
  }

  const keys = parseGroupBy(q.groupBy);
  const having = q.having?.trim() ? parseHaving(q.having) : undefined;
  const order = parseOrder(q.order ?? '-bytes', [...Object.keys(AGGREGATES), ...keys.map((k) => k.name)]);
  const keyCols = keys.map((k, i): Sql => ({ text: `${k.expr.text} AS k${i}`, params: k.expr.params }));
  const remotes = q.remotes || /\bremotes\b/i.test(`${q.having ?? ''} ${q.order ?? ''}`);
  const aggCols = Object.entries(AGGREGATES)
    .filter(([name]) => remotes || name !== 'remotes')
    .map(([name, expr]) => sql(`${expr} AS ${name}`));
  const orderBy = order
    .map((o) => {
      const k = keys.findIndex((key) => key.name === o.name);
      return `${k === -1 ? o.name : `k${k}`} ${o.descending ? 'DESC' : 'ASC'}`;
    })
    .join(', ');
  const selected = join([...keyCols, ...aggCols], ', ');
  const body = join(
    [
      sql('SELECT '),
      selected,
      sql(` FROM ${source(selected, where, ...(having ? [having] : []))} WHERE `),
      where,
      sql(` GROUP BY ${keys.map((_, i) => `k${i}`).join(', ')}`),
      ...(having ? [sql(' HAVING '), having] : []),
      sql(` ORDER BY ${orderBy}`),
      limit,
    ],
    '',
  );
  return { sql: body.text, params: body.params, keys };
}
