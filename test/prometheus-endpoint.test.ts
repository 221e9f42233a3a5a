// The exposition formats byte for byte (OpenMetrics 1.0 and text 0.0.4), the scrape's
// metric families from a small agent state, the HTTP server on loopback (no kernel
// needed), and the [prometheus] config rules.
import { gunzipSync } from 'node:zlib';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startScrapeServer } from '../src/export/prometheus/server.js';
import { exposition, negotiate, type MetricFamily } from '../src/export/prometheus/exposition.js';
import { busiest, scrapeFamilies, type ScrapeSources } from '../src/export/prometheus/metrics.js';
import { isLoopback, parseListen } from '../src/export/prometheus/config.js';
import { parseConfig } from '../src/config/load.js';
import type { ProcessUsage } from '../src/export/types.js';

const FAMILIES: MetricFamily[] = [
  {
    name: 'ubia_user_network_bytes',
    type: 'counter',
    unit: 'bytes',
    help: 'bytes of a "user" \\ with\nnewline',
    samples: [
      { labels: { user: 'alice', uid: '1001', direction: 'transmit' }, value: 1234 },
      { labels: { user: 'we"ird\\na\nme', uid: '1002', direction: 'receive' }, value: 9007199254740991 },
    ],
  },
  { name: 'ubia_empty', type: 'counter', help: 'no samples: left out', samples: [] },
  { name: 'ubia_poll_duration_seconds', type: 'gauge', unit: 'seconds', help: 'poll time', samples: [{ labels: {}, value: 0.0042 }] },
  { name: 'ubia_odd', type: 'gauge', help: 'special values', samples: [{ labels: { k: 'nan' }, value: NaN }, { labels: { k: 'inf' }, value: Infinity }] },
];

describe('Prometheus exposition', () => {
  it('writes OpenMetrics 1.0 byte for byte: family names, UNIT, _total samples, escapes, # EOF', () => {
    expect(exposition(FAMILIES, 'openmetrics')).toBe(
      [
        '# HELP ubia_user_network_bytes bytes of a \\"user\\" \\\\ with\\nnewline',
        '# TYPE ubia_user_network_bytes counter',
        '# UNIT ubia_user_network_bytes bytes',
        'ubia_user_network_bytes_total{user="alice",uid="1001",direction="transmit"} 1234',
        'ubia_user_network_bytes_total{user="we\\"ird\\\\na\\nme",uid="1002",direction="receive"} 9007199254740991',
        '# HELP ubia_poll_duration_seconds poll time',
        '# TYPE ubia_poll_duration_seconds gauge',
        '# UNIT ubia_poll_duration_seconds seconds',
        'ubia_poll_duration_seconds 0.0042',
        '# HELP ubia_odd special values',
        '# TYPE ubia_odd gauge',
        'ubia_odd{k="nan"} NaN',
        'ubia_odd{k="inf"} +Inf',
        '# EOF',
        '',
      ].join('\n'),
    );
  });

  it('writes text format 0.0.4 byte for byte: HELP/TYPE on the sample name, no UNIT, no EOF, " unescaped in HELP', () => {
    expect(exposition(FAMILIES, 'text')).toBe(
      [
        '# HELP ubia_user_network_bytes_total bytes of a "user" \\\\ with\\nnewline',
        '# TYPE ubia_user_network_bytes_total counter',
        'ubia_user_network_bytes_total{user="alice",uid="1001",direction="transmit"} 1234',
        'ubia_user_network_bytes_total{user="we\\"ird\\\\na\\nme",uid="1002",direction="receive"} 9007199254740991',
        '# HELP ubia_poll_duration_seconds poll time',
        '# TYPE ubia_poll_duration_seconds gauge',
        'ubia_poll_duration_seconds 0.0042',
        '# HELP ubia_odd special values',
        '# TYPE ubia_odd gauge',
        'ubia_odd{k="nan"} NaN',
        'ubia_odd{k="inf"} +Inf',
        '',
      ].join('\n'),
    );
  });

  it('serves OpenMetrics to Prometheus (its Accept header) and 0.0.4 to anyone else', () => {
    expect(negotiate('application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1')).toBe('openmetrics');
    expect(negotiate('*/*')).toBe('text');
    expect(negotiate(undefined)).toBe('text');
  });
});

const proc = (pid: number, comm: string, rate: number, bytes: number): ProcessUsage => ({
  pid, uid: 1001, user: 'alice', comm, rxRate: rate, txRate: 0, rxBytes: bytes, txBytes: 0, rxPackets: 1, txPackets: 1, rxPayloadBytes: 0, txPayloadBytes: 0,
});

describe('scrape families', () => {
  const counters = (n: number) => ({ rxBytes: n, txBytes: 2 * n, rxPackets: 3 * n, txPackets: 4 * n, rxPayloadBytes: 5 * n, txPayloadBytes: 6 * n });
  const wire = (n: number) => ({ rxBytes: n, txBytes: 2 * n, rxPackets: 3 * n, txPackets: 4 * n });
  const sources = (countLoopback: boolean): ScrapeSources => ({
    userTotals: () => [
      { uid: 1001, scope: 'external', ...counters(100) },
      { uid: 1001, scope: 'loopback', ...counters(7) },
      { uid: -1, scope: 'external', ...counters(9) },
      { uid: 0, scope: 'external', ...counters(1) },
    ],
    userName: (uid) => (uid === 0 ? 'root' : 'alice'),
    counts: (scope) => scope === 'external' || countLoopback,
    processes: () => [proc(10, 'idle', 0, 5), proc(11, 'curl', 900, 10), proc(12, 'wget', 100, 50)],
    interfaces: () => [{ ifindex: 2, name: 'eth0', total: wire(10), attributed: wire(8), unattributed: wire(2) }],
    health: () => ({
      unattributed: wire(2),
      meter: { overflows: { users: 0, processes: 1, flows: 2, peers: 0, interfaces: 0 }, eventsDropped: 3, beyondUserTable: { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxPayloadBytes: 0, txPayloadBytes: 0 } },
      lastPollSeconds: 0.5,
      lastPollAtMs: 1_700_000_000_500,
      exporters: [{ name: 'ipfix', state: 'ok', detail: '', queued: 4, dropped: 1 }],
      diameterPeers: [{ peer: 'aaa:3868', state: 'open' }],
    }),
  });

  it('shows the ledger totals of counted scopes per user (not the unattributed uid), top processes, interfaces and health', () => {
    const text = exposition(scrapeFamilies(sources(false), 2), 'text');
    const lines = text.split('\n').filter((l) => !l.startsWith('#') && l);
    expect(lines.filter((l) => l.startsWith('ubia_user_'))).toEqual([
      'ubia_user_network_bytes_total{user="root",uid="0",scope="external",direction="transmit"} 2',
      'ubia_user_network_bytes_total{user="root",uid="0",scope="external",direction="receive"} 1',
      'ubia_user_network_bytes_total{user="alice",uid="1001",scope="external",direction="transmit"} 200',
      'ubia_user_network_bytes_total{user="alice",uid="1001",scope="external",direction="receive"} 100',
      'ubia_user_network_packets_total{user="root",uid="0",scope="external",direction="transmit"} 4',
      'ubia_user_network_packets_total{user="root",uid="0",scope="external",direction="receive"} 3',
      'ubia_user_network_packets_total{user="alice",uid="1001",scope="external",direction="transmit"} 400',
      'ubia_user_network_packets_total{user="alice",uid="1001",scope="external",direction="receive"} 300',
      'ubia_user_payload_bytes_total{user="root",uid="0",scope="external",direction="transmit"} 6',
      'ubia_user_payload_bytes_total{user="root",uid="0",scope="external",direction="receive"} 5',
      'ubia_user_payload_bytes_total{user="alice",uid="1001",scope="external",direction="transmit"} 600',
      'ubia_user_payload_bytes_total{user="alice",uid="1001",scope="external",direction="receive"} 500',
    ]);
    expect(lines.filter((l) => l.startsWith('ubia_process_'))).toEqual([
      'ubia_process_network_bytes_total{pid="11",comm="curl",user="alice",uid="1001",direction="transmit"} 0',
      'ubia_process_network_bytes_total{pid="11",comm="curl",user="alice",uid="1001",direction="receive"} 10',
      'ubia_process_network_bytes_total{pid="12",comm="wget",user="alice",uid="1001",direction="transmit"} 0',
      'ubia_process_network_bytes_total{pid="12",comm="wget",user="alice",uid="1001",direction="receive"} 50',
    ]);
    expect(lines).toContain('ubia_interface_unattributed_packets_total{interface="eth0",direction="transmit"} 8');
    expect(lines).toContain('ubia_interface_attributed_bytes_total{interface="eth0",direction="receive"} 8');
    expect(lines).toContain('ubia_meter_overflows_total{map="flows"} 2');
    expect(lines).toContain('ubia_last_poll_timestamp_seconds 1700000000.5');
    expect(lines).toContain('ubia_exporter_queue_length{exporter="ipfix"} 4');
    expect(lines).toContain('ubia_diameter_peer_state{peer="aaa:3868",state="open"} 1');
    // with count_loopback the loopback scope is a series of its own
    const withLoopback = exposition(scrapeFamilies(sources(true), 0), 'text');
    expect(withLoopback).toContain('ubia_user_network_bytes_total{user="alice",uid="1001",scope="loopback",direction="receive"} 7');
    expect(withLoopback).not.toContain('ubia_process_');
  });

  it('ranks processes by rate, then bytes', () => {
    expect(busiest([proc(1, 'a', 0, 99), proc(2, 'b', 5, 1), proc(3, 'c', 0, 100)], 3).map((p) => p.comm)).toEqual(['b', 'c', 'a']);
  });
});

describe('[prometheus] config', () => {
  it('parses listen addresses and knows loopback', () => {
    expect(parseListen('127.0.0.1:9781')).toEqual({ host: '127.0.0.1', port: 9781 });
    expect(parseListen('[::1]:9781')).toEqual({ host: '::1', port: 9781 });
    expect(parseListen('node1.example.net:80')).toEqual({ host: 'node1.example.net', port: 80 });
    expect(parseListen('::1:9781')).toBeUndefined();
    expect(parseListen('127.0.0.1:0')).toBeUndefined();
    expect(parseListen('127.0.0.1')).toBeUndefined();
    expect(['127.0.0.1', '127.9.9.9', '::1', 'localhost', '::ffff:127.0.0.1'].every(isLoopback)).toBe(true);
    expect(['0.0.0.0', '::', '192.0.2.1', 'node1.example.net', '128.0.0.1'].some(isLoopback)).toBe(false);
  });

  it('is off by default and listens on loopback when the table is there', () => {
    expect(parseConfig('', 'ubia.toml').prometheus).toBeUndefined();
    expect(parseConfig('[prometheus]\n', 'ubia.toml').prometheus).toMatchObject({ listen: '127.0.0.1:9781', allow_remote: false, top_processes: 10 });
  });

  it('refuses a listen address beyond loopback without allow_remote, naming file, line and key', () => {
    const text = '[agent]\npoll_interval = 1\n\n[prometheus]\nlisten = "0.0.0.0:9781"\n';
    expect(() => parseConfig(text, '/etc/ubia/ubia.toml')).toThrow(/\/etc\/ubia\/ubia\.toml:5: prometheus\.listen: listen is not a loopback address.*allow_remote = true/);
    expect(parseConfig(`${text}allow_remote = true\n`, 'ubia.toml').prometheus?.listen).toBe('0.0.0.0:9781');
    expect(() => parseConfig('[prometheus]\nlisten = "9781"\n', 'u.toml')).toThrow(/u\.toml:2: prometheus\.listen: listen is "address:port"/);
  });
});

describe('scrape server', () => {
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  it('answers 503 until ready, then the negotiated format, gzipped when asked; 404 elsewhere, 405 for POST', async () => {
    let ready = false;
    const server = await startScrapeServer({
      host: '127.0.0.1',
      port: 0,
      tokens: [],
      ready: () => ready,
      exposition: (format) => exposition(FAMILIES.slice(2, 3), format),
      logger: pino({ level: 'silent' }),
    });
    closers.push(() => server.close());
    const url = `http://127.0.0.1:${server.address.port}`;
    const starting = await fetch(`${url}/metrics`);
    expect(starting.status).toBe(503);
    expect(starting.headers.get('retry-after')).toBe('1');
    ready = true;
    const om = await fetch(`${url}/metrics`, { headers: { accept: 'application/openmetrics-text;version=1.0.0', 'accept-encoding': 'identity' } });
    expect(om.headers.get('content-type')).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    expect(await om.text()).toBe(exposition(FAMILIES.slice(2, 3), 'openmetrics'));
    // Node's fetch would unzip by itself: read the raw body over node:http
    const { request } = await import('node:http');
    const raw = await new Promise<{ encoding: string | undefined; body: Buffer }>((resolve, reject) => {
      request(`${url}/metrics`, { headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }));
      }).on('error', reject).end();
    });
    expect(raw.encoding).toBe('gzip');
    expect(gunzipSync(raw.body).toString()).toBe(exposition(FAMILIES.slice(2, 3), 'text'));
    expect((await fetch(`${url}/`)).status).toBe(404);
    expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(405);
    expect(server.counts().served).toBe(2);
  });

  it('refuses a port already in use with what to do', async () => {
    const opts = { host: '127.0.0.1', port: 0, tokens: [], ready: () => true, exposition: () => '', logger: pino({ level: 'silent' }) };
    const first = await startScrapeServer(opts);
    closers.push(() => first.close());
    await expect(startScrapeServer({ ...opts, port: first.address.port })).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+: the port is in use/);
  });
});
