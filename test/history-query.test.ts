// The flow query language: what parses, what SQL and bound values it becomes, and where
// errors point. No store needed: the compiled statement is the contract with it.
import { describe, expect, it } from 'vitest';
import { compileQuery, parseFilter, parseGroupBy, parseHaving, parseOrder, QueryError } from '../src/history/query.js';
import { addressToBigInt, bigIntToAddress } from '../src/history/address.js';
import { parseAmount } from '../src/history/tokens.js';

const errorOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(QueryError);
    return (e as Error).message;
  }
  throw new Error('expected a QueryError');
};

describe('filter (--where)', () => {
  it('compiles nfdump/tcpdump primitives with every value bound', () => {
    expect(parseFilter('proto udp and port 53 and not user root')).toEqual({
      text: '(protocol = ? AND (local_port = ? OR remote_port = ?) AND NOT uid IN (SELECT uid FROM users WHERE name = ?))',
      params: [17, 53, 53, 'root'],
    });
    expect(parseFilter('dst port 443 or src port 22')).toEqual({ text: '(remote_port = ? OR local_port = ?)', params: [443, 22] });
    expect(parseFilter('tcp && !(uid 0 || comm sshd)')).toEqual({ text: '(protocol = ? AND NOT (uid = ? OR comm = ?))', params: [6, 0, 'sshd'] });
    expect(parseFilter('user 1001')).toEqual({ text: 'uid = ?', params: [1001] });
    expect(parseFilter('proto 132 and ipv6 and pid 7 and exe /usr/bin/rsync').params).toEqual([132, 6, 7, '/usr/bin/rsync']);
  });

  it('turns host and net into 128-bit values and masks (IPv4 mapped)', () => {
    const host = parseFilter('remote host 198.18.0.7');
    expect(host).toEqual({ text: 'remote_addr = ?', params: [addressToBigInt('198.18.0.7')] });
    const net = parseFilter('net 198.18.0.0/15');
    expect(net.text).toBe('((local_addr & ?) = ? OR (remote_addr & ?) = ?)');
    expect(bigIntToAddress(net.params[1] as bigint)).toBe('198.18.0.0');
    expect((net.params[0] as bigint).toString(16)).toBe(`${'f'.repeat(24)}fffe0000`);
    const v6 = parseFilter('dst net 2001:db8::/32');
    expect(v6.params).toEqual([((1n << 32n) - 1n) << 96n, addressToBigInt('2001:db8::')]);
  });

  it('keeps injected SQL as a value', () => {
    const f = parseFilter(`user "x'OR'1'='1" and comm 'my prog'`);
    expect(f).toEqual({ text: '(uid IN (SELECT uid FROM users WHERE name = ?) AND comm = ?)', params: [`x'OR'1'='1`, 'my prog'] });
    expect(errorOf(() => parseFilter(`comm 'rsync`))).toBe('--where: unterminated single quote at column 6');
  });

  it('points at the offending token with its column', () => {
    expect(errorOf(() => parseFilter('port 5x'))).toBe('--where: port: expected a number at column 6');
    expect(errorOf(() => parseFilter('port 70000'))).toBe('--where: port: 70000 is out of range (0 to 65535) at column 6');
    expect(errorOf(() => parseFilter('proto udp and'))).toBe('--where: expected a filter term such as "proto udp", "port 53", "user alice" at column 14');
    expect(errorOf(() => parseFilter('proto xyz'))).toMatch(/^--where: proto: expected tcp, udp.* at column 7$/);
    expect(errorOf(() => parseFilter('(tcp or udp'))).toBe('--where: expected ")" at column 12');
    expect(errorOf(() => parseFilter('tcp udp'))).toBe('--where: expected "and", "or" or the end, not "udp" at column 5');
    expect(errorOf(() => parseFilter('net 10.0.0.0/33'))).toMatch(/net: expected a network .* at column 5$/);
    expect(errorOf(() => parseFilter('host 999.1.1.1'))).toBe('--where: host: expected an IPv4 or IPv6 address at column 6');
    expect(errorOf(() => parseFilter('src proto tcp'))).toBe('--where: src: expected host, net or port at column 5');
    expect(errorOf(() => parseFilter('colour red'))).toMatch(/^--where: unknown term "colour" .* at column 1$/);
    expect(errorOf(() => parseFilter('user and'))).toBe('--where: user: expected a user name or uid at column 6');
  });
});

describe('groups, group filter, order', () => {
  it('groups by fields and prefixes', () => {
    expect(parseGroupBy('user, remote_port').map((k) => k.name)).toEqual(['user', 'remote_port']);
    const [net] = parseGroupBy('remote/24');
    expect(net!.expr.text).toBe('(remote_addr & CASE WHEN (remote_addr >> 32) = 65535 THEN ?::UHUGEINT ELSE ?::UHUGEINT END)');
    expect(net!.expr.params).toEqual([((1n << 120n) - 1n) << 8n, ((1n << 64n) - 1n) << 64n]);
    expect(parseGroupBy('local/16/48')[0]!.expr.params[1]).toBe(((1n << 48n) - 1n) << 80n);
    expect(errorOf(() => parseGroupBy('user,colour'))).toMatch(/^--group-by: unknown field "colour" .* at column 6$/);
    expect(errorOf(() => parseGroupBy('remote/40'))).toMatch(/^--group-by: remote: expected remote\/V4 .* at column 1$/);
    expect(errorOf(() => parseGroupBy('user user'))).toBe('--group-by: expected "," or the end, not "user" at column 6');
    expect(errorOf(() => parseGroupBy('user,user'))).toBe('--group-by: "user" is listed twice');
  });

  it('filters groups by aggregates with units', () => {
    expect(parseHaving('bytes > 10M and (flows >= 3 or remotes != 1)')).toEqual({
      text: '(SUM(rx_bytes + tx_bytes) > ? AND (COUNT(*)::DOUBLE >= ? OR COUNT(DISTINCT remote_addr)::DOUBLE <> ?))',
      params: [10_000_000, 3, 1],
    });
    expect(parseAmount('1.5GiB')).toBe(1.5 * 2 ** 30);
    expect(parseAmount('10x')).toBeUndefined();
    expect(errorOf(() => parseHaving('bytes > lots'))).toBe('--having: bytes: expected a number such as 10M or 1.5GiB at column 9');
    expect(errorOf(() => parseHaving('bytes ~ 1'))).toMatch(/^--having: unknown term|bytes: expected a comparison/);
    expect(errorOf(() => parseHaving('weight > 1'))).toMatch(/^--having: unknown aggregate "weight" .* at column 1$/);
  });

  it('orders by aggregates and keys', () => {
    expect(parseOrder('-bytes,user', ['bytes', 'user'])).toEqual([
      { name: 'bytes', descending: true },
      { name: 'user', descending: false },
    ]);
    expect(errorOf(() => parseOrder('-colour', ['bytes']))).toBe('--order: cannot order by "colour" here (try bytes) at column 1');
  });

  it('compiles the stages into one statement with the range and the caller first', () => {
    const q = compileQuery({ fromMs: 1, toMs: 2, uids: [1001, 1003], where: 'udp', groupBy: 'user,remote/24', having: 'bytes > 10M', order: '-bytes', limit: 20 });
    expect(q.sql).toMatch(/^SELECT uid AS k0, \(remote_addr & .*\) AS k1, SUM\(rx_bytes \+ tx_bytes\) AS bytes, .* FROM flows WHERE end_ms >= \? AND end_ms < \? AND uid IN \(\?, \?\) AND protocol = \? GROUP BY k0, k1 HAVING SUM\(rx_bytes \+ tx_bytes\) > \? ORDER BY bytes DESC LIMIT \?$/);
    expect(q.params.slice(2)).toEqual([1, 2, 1001, 1003, 17, 10_000_000, 20]);
    // a caller who may see nobody's flows gets none
    expect(compileQuery({ fromMs: 1, toMs: 2, uids: [], limit: 1 }).sql).toContain('AND false');
    // names and programs are joined in only when the query uses them
    expect(compileQuery({ fromMs: 1, toMs: 2, where: 'comm rsync', groupBy: 'uid', limit: 1 }).sql).toContain(' FROM flow_records WHERE ');
    expect(errorOf(() => compileQuery({ fromMs: 0, toMs: 1, limit: 1, having: 'bytes > 1' }))).toBe('--having: filters groups: give --group-by too');
  });
});

describe('addresses', () => {
  it('round-trips IPv4 and IPv6 text', () => {
    for (const a of ['198.18.0.1', '0.0.0.0', '2001:db8::1', '::1', '::', 'fe80::1:0:0:1', '2001:db8:0:1:1:1:1:1']) {
      expect(bigIntToAddress(addressToBigInt(a)!)).toBe(a);
    }
    expect(bigIntToAddress(addressToBigInt('::ffff:198.18.0.1')!)).toBe('198.18.0.1');
    expect(addressToBigInt('nope')).toBeUndefined();
  });
});
