// The OTLP exporter against a real OTLP/HTTP receiver: an HTTP server in this test takes
// the exports (JSON and protobuf), decodes them (protobuf with the small reader below,
// field numbers from opentelemetry-proto's metrics/v1 and collector/metrics/v1 protos)
// and checks the figures against the usage and flows the test fed the exporter.
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createOtlpExporter, otlpConfigSchema } from '../src/export/otlp/index.js';
import type { AgentHealth, Exporter, FlowSnapshot, UserUsage } from '../src/export/types.js';
import type { StatusResult, UsersResult } from '../src/control/protocol.js';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cli, startAgent } from './support/agent.js';
import { startReceiver, type Received } from './support/otlp-receiver.js';
import { createTestbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { sleep, waitFor } from './support/wait.js';
import { DEFAULT_WORKLOAD_RULES, workloadNamer } from '../src/core/workload.js';
import { slurmCgroups } from './support/cgroups.js';

// (the last describe block runs the real agent with real traffic against the receiver)

// ---------- decoding both encodings into one shape ----------

type AttrValue = string | number | boolean;
interface Point {
  metric: string;
  unit: string;
  kind: 'sum' | 'gauge';
  temporality: 'delta' | 'cumulative' | undefined;
  attrs: Record<string, AttrValue>;
  value: number;
  startNs: bigint;
  endNs: bigint;
}
interface Decoded {
  resource: Record<string, AttrValue>;
  points: Point[];
}

// protobuf wire format: https://protobuf.dev/programming-guides/encoding/
type Field = { no: number; varint?: bigint; bytes?: Buffer };
function readVarint(buf: Buffer, pos: { at: number }): bigint {
  let result = 0n;
  for (let shift = 0n; shift < 70n; shift += 7n) {
    const b = buf[pos.at++]!;
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return result;
  }
  throw new Error('varint too long');
}
function protoFields(buf: Buffer): Field[] {
  const out: Field[] = [];
  const pos = { at: 0 };
  while (pos.at < buf.length) {
    const key = Number(readVarint(buf, pos));
    const no = key >>> 3;
    switch (key & 7) {
      case 0:
        out.push({ no, varint: readVarint(buf, pos) });
        break;
      case 1:
        out.push({ no, bytes: buf.subarray(pos.at, pos.at + 8) });
        pos.at += 8;
        break;
      case 2: {
        const len = Number(readVarint(buf, pos));
        out.push({ no, bytes: buf.subarray(pos.at, pos.at + len) });
        pos.at += len;
        break;
      }
      case 5:
        out.push({ no, bytes: buf.subarray(pos.at, pos.at + 4) });
        pos.at += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${key & 7}`);
    }
  }
  return out;
}
const sub = (fs: Field[], no: number) => fs.filter((f) => f.no === no).map((f) => protoFields(f.bytes!));
const str = (fs: Field[], no: number) => fs.find((f) => f.no === no)?.bytes?.toString('utf8') ?? '';

function protoAttrs(kvs: Field[][]): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of kvs) {
    const any = sub(kv, 2)[0] ?? [];
    const f = any[0];
    if (!f) continue;
    // AnyValue: 1 string, 2 bool, 3 int64, 4 double
    out[str(kv, 1)] =
      f.no === 1 ? f.bytes!.toString('utf8') : f.no === 2 ? f.varint === 1n : f.no === 3 ? Number(BigInt.asIntN(64, f.varint!)) : f.bytes!.readDoubleLE(0);
  }
  return out;
}

function decodeProtobuf(body: Buffer): Decoded {
  const decoded: Decoded = { resource: {}, points: [] };
  for (const rm of sub(protoFields(body), 1)) {
    Object.assign(decoded.resource, protoAttrs(sub(sub(rm, 1)[0] ?? [], 1)));
    for (const sm of sub(rm, 2)) {
      for (const m of sub(sm, 2)) {
        const sum = sub(m, 7)[0];
        const gauge = sub(m, 5)[0];
        const body = sum ?? gauge;
        if (!body) continue;
        const t = sum?.find((f) => f.no === 2)?.varint;
        for (const dp of sub(body, 1)) {
          const asDouble = dp.find((f) => f.no === 4)?.bytes;
          const asInt = dp.find((f) => f.no === 6)?.bytes;
          decoded.points.push({
            metric: str(m, 1),
            unit: str(m, 3),
            kind: sum ? 'sum' : 'gauge',
            temporality: t === 1n ? 'delta' : t === 2n ? 'cumulative' : undefined,
            attrs: protoAttrs(sub(dp, 7)),
            value: asDouble ? asDouble.readDoubleLE(0) : asInt ? Number(asInt.readBigInt64LE(0)) : 0,
            startNs: dp.find((f) => f.no === 2)?.bytes?.readBigUInt64LE(0) ?? 0n,
            endNs: dp.find((f) => f.no === 3)?.bytes?.readBigUInt64LE(0) ?? 0n,
          });
        }
      }
    }
  }
  return decoded;
}

// OTLP/JSON: proto3 JSON mapping with lowerCamelCase names; int64 may be a string
type JsonKv = { key: string; value: Record<string, unknown> };
function jsonAttrs(kvs: JsonKv[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const { key, value } of kvs ?? []) {
    const v = value.stringValue ?? value.boolValue ?? value.intValue ?? value.doubleValue;
    out[key] = 'intValue' in value ? Number(v) : (v as AttrValue);
  }
  return out;
}
function decodeJson(body: Buffer): Decoded {
  const doc = JSON.parse(body.toString('utf8'));
  const decoded: Decoded = { resource: {}, points: [] };
  for (const rm of doc.resourceMetrics ?? []) {
    Object.assign(decoded.resource, jsonAttrs(rm.resource?.attributes));
    for (const sm of rm.scopeMetrics ?? []) {
      for (const m of sm.metrics ?? []) {
        const body = m.sum ?? m.gauge;
        if (!body) continue;
        const t = m.sum?.aggregationTemporality;
        for (const dp of body.dataPoints ?? []) {
          decoded.points.push({
            metric: m.name,
            unit: m.unit ?? '',
            kind: m.sum ? 'sum' : 'gauge',
            temporality: t === 1 ? 'delta' : t === 2 ? 'cumulative' : undefined,
            attrs: jsonAttrs(dp.attributes),
            value: Number(dp.asInt ?? dp.asDouble ?? 0),
            startNs: BigInt(dp.startTimeUnixNano ?? 0),
            endNs: BigInt(dp.timeUnixNano ?? 0),
          });
        }
      }
    }
  }
  return decoded;
}

const decode = (r: Received): Decoded =>
  r.contentType.includes('json') ? decodeJson(r.body) : decodeProtobuf(r.body);

// ---------- synthetic agent input ----------

function user(uid: number, name: string, tx: number, rx: number): UserUsage {
  return {
    uid,
    user: name,
    txBytes: tx,
    rxBytes: rx,
    txPackets: Math.ceil(tx / 1000),
    rxPackets: Math.ceil(rx / 1000),
    txPayloadBytes: tx - 40 * Math.ceil(tx / 1000),
    rxPayloadBytes: rx - 40 * Math.ceil(rx / 1000),
  };
}

let cookie = 1000n;
function flow(uid: number, name: string, pid: number, comm: string, tx: number, rx: number): FlowSnapshot {
  return {
    cookie: cookie++,
    family: 4,
    protocol: 6,
    localAddress: '127.0.0.1',
    localPort: 40000 + pid,
    remoteAddress: '127.0.0.1',
    remotePort: 443,
    uid,
    gid: uid,
    user: name,
    pid,
    comm,
    cgroupId: 1n,
    scope: 'external',
    firstSeenMs: Date.now(),
    lastSeenMs: Date.now(),
    txBytes: tx,
    rxBytes: rx,
    txPackets: 1,
    rxPackets: 1,
    txPayloadBytes: tx,
    rxPayloadBytes: rx,
  };
}

function logCapture() {
  const lines: Array<{ level: number; msg: string }> = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

const find = (d: Decoded, metric: string, attrs: Record<string, AttrValue>) =>
  d.points.filter((p) => p.metric === metric && Object.entries(attrs).every(([k, v]) => p.attrs[k] === v));

// ---------- tests ----------

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A port nothing listens on (reserved, then closed): the receiver is "down". */
async function closedPort(): Promise<number> {
  const probe = await startReceiver();
  await probe.close();
  return probe.port;
}

/** An exporter sending to 127.0.0.1:port every second, closed after the test. */
function exporterTo(port: number, settings: Record<string, unknown>, health?: () => AgentHealth, spoolDir?: string) {
  const { logger, lines } = logCapture();
  const cfg = otlpConfigSchema.parse({ endpoint: `http://127.0.0.1:${port}/v1/metrics`, interval: 1, timeout: 1, ...settings });
  const exporter: Exporter = createOtlpExporter(cfg, { logger, hostName: 'test-host', version: '9.9.9', health, spoolDir });
  cleanups.push(() => exporter.close());
  return { exporter, lines };
}

describe('OTLP metrics exporter', () => {
  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    it(`exports per-user, top-N process and health metrics over ${protocol}`, async () => {
      const receiver = await startReceiver();
      cleanups.push(() => receiver.close());
      const health: AgentHealth = {
        unattributed: { txBytes: 1234, rxBytes: 5678, txPackets: 12, rxPackets: 56 },
        meter: { overflows: { users: 0, processes: 3, flows: 7, peers: 0, interfaces: 0 }, eventsDropped: 2, beyondUserTable: { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxPayloadBytes: 0, txPayloadBytes: 0 } },
        lastPollSeconds: 0.0042,
        lastPollAtMs: Date.now(),
        exporters: [{ name: 'ipfix', state: 'ok', detail: '', queued: 17, dropped: 1 }],
        diameterPeers: [{ peer: 'aaa.example.net', state: 'I-Open' }],
      };
      const settings = { protocol, top_processes: 2, headers: { Authorization: 'Bearer s3cret' } };
      const { exporter } = exporterTo(receiver.port, settings, () => health);

      // two poll intervals of per-user deltas; cumulative temporality (the default) sums them
      exporter.usage({ startMs: 0, endMs: 1, users: [user(1001, 'alice', 10_000, 250_000), user(1002, 'bob', 3_000, 4_000)] });
      exporter.usage({ startMs: 1, endMs: 2, users: [user(1001, 'alice', 5_000, 50_000)] });
      // three processes: curl (big), ssh (medium), ntpd (small, must be cut by top_processes=2)
      const curl = flow(1001, 'alice', 4242, 'curl', 1_000, 200_000);
      const ssh = flow(1002, 'bob', 777, 'ssh', 5_000, 6_000);
      const ntpd = flow(0, 'root', 99, 'ntpd', 90, 90);
      exporter.activeFlows!([curl, ssh, ntpd], Date.now());
      exporter.activeFlows!([{ ...curl, txBytes: 2_000, rxBytes: 300_000 }, ssh, ntpd], Date.now());
      exporter.flowEnded({ ...ssh, txBytes: 7_000, rxBytes: 8_000 });

      const req = await waitFor('an export with user metrics', () =>
        receiver.requests.find((r) => decode(r).points.some((p) => p.metric === 'ubia.user.network.io')),
      );
      expect(req.contentType).toBe(protocol === 'http/json' ? 'application/json' : 'application/x-protobuf');
      expect(req.authorization).toBe('Bearer s3cret');
      const d = decode(req);
      expect(d.resource).toMatchObject({ 'service.name': 'ubia', 'service.version': '9.9.9', 'host.name': 'test-host' });

      const value = (metric: string, attrs: Record<string, AttrValue>) => {
        const ps = find(d, metric, attrs);
        expect(ps, `${metric} ${JSON.stringify(attrs)}`).toHaveLength(1);
        return ps[0]!;
      };
      const alice = { 'user.id': '1001', 'user.name': 'alice' };
      const bob = { 'user.id': '1002', 'user.name': 'bob' };
      const tx = { 'network.io.direction': 'transmit' };
      const rx = { 'network.io.direction': 'receive' };
      const aliceTx = value('ubia.user.network.io', { ...alice, ...tx });
      expect(aliceTx).toMatchObject({ value: 15_000, unit: 'By', kind: 'sum', temporality: 'cumulative' });
      expect(value('ubia.user.network.io', { ...alice, ...rx }).value).toBe(300_000);
      expect(value('ubia.user.network.io', { ...bob, ...tx }).value).toBe(3_000);
      expect(value('ubia.user.network.io', { ...bob, ...rx }).value).toBe(4_000);
      expect(value('ubia.user.network.packets', { ...alice, ...tx }).value).toBe(10 + 5);
      expect(value('ubia.user.network.packets', { ...bob, ...rx }).value).toBe(4);
      expect(value('ubia.user.network.payload.io', { ...alice, ...rx }).value).toBe(250_000 - 40 * 250 + 50_000 - 40 * 50);

      // top 2 processes by bytes of the interval: curl (302 000) and ssh (15 000), not ntpd
      const procs = d.points.filter((p) => p.metric === 'process.network.io');
      expect(new Set(procs.map((p) => p.attrs['process.executable.name']))).toEqual(new Set(['curl', 'ssh']));
      expect(value('process.network.io', { 'process.pid': 4242, 'process.executable.name': 'curl', ...alice, ...tx }).value).toBe(2_000);
      expect(value('process.network.io', { 'process.pid': 4242, ...rx }).value).toBe(300_000);
      expect(value('process.network.io', { 'process.pid': 777, ...bob, ...tx }).value).toBe(7_000);
      expect(value('process.network.io', { 'process.pid': 777, ...rx }).value).toBe(8_000);

      expect(value('ubia.unattributed.io', tx).value).toBe(1234);
      expect(value('ubia.unattributed.packets', rx).value).toBe(56);
      expect(value('ubia.meter.overflows', { 'ubia.map': 'flows' }).value).toBe(7);
      expect(value('ubia.meter.overflows', { 'ubia.map': 'processes' }).value).toBe(3);
      expect(value('ubia.meter.events_dropped', {}).value).toBe(2);
      const poll = value('ubia.poll.duration', {});
      expect(poll.kind).toBe('gauge');
      expect(poll.value).toBeCloseTo(0.0042, 6);
      expect(value('ubia.exporter.queue.depth', { 'ubia.exporter': 'ipfix' }).value).toBe(17);
      expect(value('ubia.exporter.dropped', { 'ubia.exporter': 'ipfix' }).value).toBe(1);
      expect(value('ubia.diameter.peer.state', { 'ubia.diameter.peer': 'aaa.example.net', 'ubia.diameter.peer.state': 'I-Open' }).value).toBe(1);

      const status = exporter.status();
      expect(status).toMatchObject({ name: 'otlp', state: 'ok', queued: 0, dropped: 0 });
    });
  }

  it('exports one user\'s traffic per unit with systemd.unit, ubia.job.id and container.id; top_units cuts the quietest', async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const { exporter } = exporterTo(receiver.port, { protocol: 'http/protobuf', top_processes: 0, top_units: 3 });
    const named = workloadNamer(DEFAULT_WORKLOAD_RULES);
    const nginx = named('/system.slice/nginx.service');
    const job = named('/system.slice/slurmstepd.scope/job_1234/step_0');
    const container = named(`/system.slice/docker-${'ab12'.repeat(16)}.scope`);
    const cron = named('/system.slice/cron.service');
    const at = (w: typeof nginx, tx: number, rx: number) => ({ ...user(1001, 'alice', tx, rx), workload: w });
    // two polls; alice's units sum to her per-user row; cron is the quietest of four
    const polls = [
      [at(nginx, 1_000, 20_000), at(job, 300_000, 4_000_000), at(container, 50, 60), at(cron, 1, 1)],
      [at(nginx, 2_000, 30_000), at(job, 700_000, 6_000_000), at(container, 70, 80)],
    ];
    polls.forEach((workloads, i) => {
      const total = workloads.reduce((a, w) => ({ ...a, txBytes: a.txBytes + w.txBytes, rxBytes: a.rxBytes + w.rxBytes, txPackets: a.txPackets + w.txPackets, rxPackets: a.rxPackets + w.rxPackets }), user(1001, 'alice', 0, 0));
      exporter.usage({ startMs: i, endMs: i + 1, users: [total], workloads });
    });

    const req = await waitFor('an export with unit metrics', () =>
      receiver.requests.find((r) => decode(r).points.some((p) => p.metric === 'ubia.unit.network.io')),
    );
    const d = decode(req);
    const units = d.points.filter((p) => p.metric === 'ubia.unit.network.io');
    const series = (name: string, direction: string) => units.filter((p) => p.attrs['ubia.unit.name'] === name && p.attrs['network.io.direction'] === direction);
    const alice = { 'user.id': '1001', 'user.name': 'alice' };
    expect(series('nginx.service', 'transmit')).toEqual([expect.objectContaining({ value: 3_000, unit: 'By', temporality: 'cumulative', attrs: { ...alice, 'ubia.unit.kind': 'service', 'ubia.unit.name': 'nginx.service', 'systemd.unit': 'nginx.service', 'network.io.direction': 'transmit' } })]);
    expect(series('nginx.service', 'receive')[0]!.value).toBe(50_000);
    expect(series('job_1234/step_0', 'transmit')).toEqual([expect.objectContaining({ value: 1_000_000, attrs: { ...alice, 'ubia.unit.kind': 'step', 'ubia.unit.name': 'job_1234/step_0', 'ubia.job.id': '1234', 'network.io.direction': 'transmit' } })]);
    expect(series('job_1234/step_0', 'receive')[0]!.value).toBe(10_000_000);
    const docker = `docker-${'ab12'.repeat(16)}.scope`;
    expect(series(docker, 'receive')).toEqual([expect.objectContaining({ value: 140, attrs: { ...alice, 'ubia.unit.kind': 'container', 'ubia.unit.name': docker, 'container.id': 'ab12'.repeat(16), 'network.io.direction': 'receive' } })]);
    // top_units = 3: cron.service, the quietest, is not exported; 3 units × 2 directions per metric
    expect(units).toHaveLength(6);
    expect(series('cron.service', 'transmit')).toEqual([]);
    const packets = d.points.filter((p) => p.metric === 'ubia.unit.network.packets' && p.attrs['ubia.unit.name'] === 'job_1234/step_0' && p.attrs['network.io.direction'] === 'transmit');
    expect(packets.map((p) => p.value)).toEqual([polls[0]![1]!.txPackets + polls[1]![1]!.txPackets]);
    const payload = d.points.filter((p) => p.metric === 'ubia.unit.network.payload.io' && p.attrs['ubia.unit.name'] === 'nginx.service' && p.attrs['network.io.direction'] === 'receive');
    expect(payload.map((p) => p.value)).toEqual([polls[0]![0]!.rxPayloadBytes + polls[1]![0]!.rxPayloadBytes]);
    // the per-user series still carry all of alice's traffic, cron's included
    expect(find(d, 'ubia.user.network.io', { ...alice, 'network.io.direction': 'transmit' })[0]!.value).toBe(1_000 + 300_000 + 50 + 1 + 2_000 + 700_000 + 70);
    expect(exporter.status().extra).toMatchObject({ unitsTracked: 4 });
  });

  it('keeps delta exports while the receiver is down, delivers them when it is back, and never blocks', async () => {
    const port = await closedPort();
    const { exporter, lines } = exporterTo(port, { protocol: 'http/protobuf', temporality: 'delta', top_processes: 0 });

    // the event loop must stay responsive during the outage: count 50 ms ticks
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 50);
    cleanups.push(async () => clearInterval(ticker));
    const outageStart = Date.now();

    let sentTx = 0;
    for (let i = 0; i < 3; i++) {
      exporter.usage({ startMs: i, endMs: i + 1, users: [user(1001, 'alice', 1000 * (i + 1), 1)] });
      sentTx += 1000 * (i + 1);
      await waitFor(`failed export #${i + 1}`, () => (exporter.status().extra!.failures as number) > i || undefined);
    }
    const down = exporter.status();
    expect(down.state).toBe('degraded');
    expect(down.detail).toContain('retrying');
    expect(down.queued).toBeGreaterThanOrEqual(3);
    expect(down.dropped).toBe(0);
    const outageMs = Date.now() - outageStart;
    expect(ticks).toBeGreaterThan((outageMs / 50) * 0.5);

    const receiver = await startReceiver(port);
    cleanups.push(() => receiver.close());
    exporter.usage({ startMs: 3, endMs: 4, users: [user(1001, 'alice', 500, 1)] });
    sentTx += 500;

    const deliveredTx = () =>
      receiver.requests
        .flatMap((r) => find(decode(r), 'ubia.user.network.io', { 'user.id': '1001', 'network.io.direction': 'transmit' }))
        .reduce((sum, p) => {
          expect(p.temporality).toBe('delta');
          return sum + p.value;
        }, 0);
    await waitFor('every queued delta delivered', () => (deliveredTx() === sentTx ? true : undefined));
    await waitFor('status back to ok', () => (exporter.status().state === 'ok' ? true : undefined));
    expect(exporter.status().queued).toBe(0);

    // one line when delivery broke, one when it came back: no line per retry
    expect(lines.filter((l) => l.msg.startsWith('OTLP export failed'))).toHaveLength(1);
    expect(lines.filter((l) => l.msg === 'OTLP export delivered again')).toHaveLength(1);
  });

  it('keeps delta exports not yet delivered on disk (0600) across a stop, and sends them after the restart', async () => {
    const port = await closedPort();
    const spoolDir = join(mkdtempSync(join(tmpdir(), 'ubia-otlp-spool-')), 'otlp-spool');
    cleanups.push(async () => rmSync(dirname(spoolDir), { recursive: true, force: true }));
    const settings = { protocol: 'http/protobuf', temporality: 'delta', top_processes: 0 };
    const before = exporterTo(port, settings, undefined, spoolDir).exporter;
    let sentTx = 0;
    for (let i = 0; i < 3; i++) {
      before.usage({ startMs: i, endMs: i + 1, users: [user(1001, 'alice', 1000 * (i + 1), 1)] });
      sentTx += 1000 * (i + 1);
      await waitFor(`failed export #${i + 1}`, () => (before.status().extra!.failures as number) > i || undefined);
    }
    await before.close(); // its last export fails too: everything stays queued
    const files = readdirSync(spoolDir);
    expect(files.length).toBeGreaterThanOrEqual(3);
    expect(statSync(spoolDir).mode & 0o777).toBe(0o700);
    for (const f of files) expect(statSync(join(spoolDir, f)).mode & 0o777, f).toBe(0o600);

    const receiver = await startReceiver(port);
    cleanups.push(() => receiver.close());
    const after = exporterTo(port, settings, undefined, spoolDir).exporter;
    after.usage({ startMs: 3, endMs: 4, users: [user(1001, 'alice', 500, 1)] });
    sentTx += 500;
    const deliveredTx = () =>
      receiver.requests
        .flatMap((r) => find(decode(r), 'ubia.user.network.io', { 'user.id': '1001', 'network.io.direction': 'transmit' }))
        .reduce((sum, p) => sum + p.value, 0);
    await waitFor('the exports of the first run and the new one delivered', () => (deliveredTx() === sentTx ? true : undefined));
    await waitFor('the spool emptied', () => (readdirSync(spoolDir).length === 0 ? true : undefined));
    // each delivered once: nothing more arrives
    await sleep(1500);
    expect(deliveredTx()).toBe(sentTx);
  });

  it('with cumulative temporality, the first export after an outage carries every byte and the busy processes', async () => {
    const port = await closedPort();
    const { exporter } = exporterTo(port, { protocol: 'http/json', top_processes: 1 });
    exporter.usage({ startMs: 0, endMs: 1, users: [user(1001, 'alice', 7_000, 9_000)] });
    // busy only during the outage: still the top process of the first delivered export
    const wget = flow(1001, 'alice', 31337, 'wget', 0, 0);
    exporter.activeFlows!([wget], Date.now());
    exporter.flowEnded({ ...wget, txBytes: 4_000, rxBytes: 90_000 });
    await waitFor('two failed exports', () => ((exporter.status().extra!.failures as number) >= 2 ? true : undefined));
    // nothing to keep: the next cumulative export supersedes the failed ones
    expect(exporter.status()).toMatchObject({ state: 'degraded', queued: 0 });
    exporter.usage({ startMs: 1, endMs: 2, users: [user(1001, 'alice', 1_000, 2_000)] });

    const receiver = await startReceiver(port);
    cleanups.push(() => receiver.close());
    const txOf = (r: Received) =>
      find(decode(r), 'ubia.user.network.io', { 'user.id': '1001', 'network.io.direction': 'transmit' }).map((p) => {
        expect(p.temporality).toBe('cumulative');
        return p.value;
      });
    await waitFor('an export with both intervals', () => (receiver.requests.some((r) => txOf(r).includes(8_000)) ? true : undefined));
    // an export collected before the second interval may still land (7 000), nothing else
    expect(new Set(receiver.requests.flatMap(txOf))).toSatisfy((values: Set<number>) => [...values].every((v) => v === 7_000 || v === 8_000));
    await waitFor('status back to ok', () => (exporter.status().state === 'ok' ? true : undefined));
    const delivered = receiver.requests.find((r) => txOf(r).length > 0)!;
    const wgetPoints = find(decode(delivered), 'process.network.io', { 'process.pid': 31337, 'process.executable.name': 'wget' });
    expect(wgetPoints.map((p) => [p.attrs['network.io.direction'], p.value]).sort()).toEqual([['receive', 90_000], ['transmit', 4_000]]);
  });

  it('drops a delta export the receiver refuses (400) instead of retrying it forever', async () => {
    const receiver = await startReceiver(0, (n) => (n === 0 ? 400 : 200));
    cleanups.push(() => receiver.close());
    const { exporter, lines } = exporterTo(receiver.port, { temporality: 'delta', top_processes: 0 });
    exporter.usage({ startMs: 0, endMs: 1, users: [user(1001, 'alice', 1_000, 1)] });
    await waitFor('the refused export to be dropped', () => (exporter.status().dropped === 1 ? true : undefined));
    exporter.usage({ startMs: 1, endMs: 2, users: [user(1001, 'alice', 2_000, 1)] });
    const second = await waitFor('the next export', () =>
      receiver.requests.map((r) => find(decode(r), 'ubia.user.network.io', { 'network.io.direction': 'transmit' })).find((ps) => ps.length > 0),
    );
    expect(second.map((p) => p.value)).toEqual([2_000]);
    expect(exporter.status()).toMatchObject({ state: 'ok', queued: 0, dropped: 1 });
    expect(lines.filter((l) => l.msg.startsWith('OTLP receiver refused an export'))).toHaveLength(1);
  });

  it('rejects bad configuration with a message naming the key', () => {
    const bad = otlpConfigSchema.safeParse({ interval: 5, timeout: 10 });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]!.path).toEqual(['timeout']);
    expect(otlpConfigSchema.safeParse({ endpont: 'http://x' }).success).toBe(false);
    expect(otlpConfigSchema.safeParse({ endpoint: 'ftp://x/v1/metrics' }).success).toBe(false);
    expect(otlpConfigSchema.parse({})).toMatchObject({ endpoint: 'http://127.0.0.1:4318/v1/metrics', interval: 60, temporality: 'cumulative' });
  });
});

describe('OTLP metrics from the real agent', () => {
  for (const [protocol, temporality] of [['http/protobuf', 'cumulative'], ['http/json', 'delta']] as const) {
    it(`keeps counting while the receiver is down, then reports what test users really sent and received (${protocol}, ${temporality})`, async () => {
      // the receiver is down when the agent starts and while the users send
      const port = await closedPort();
      const bed = await createTestbed(`otlp-${temporality}`, { users: 2, sinkPort: 9000 });
      cleanups.push(() => bed.remove());
      const { dir, pinDir, net, sink } = bed;
      const [alice, bob] = bed.users as [TestUser, TestUser];
      const agent = await startAgent({
        dir,
        pinDir,
        extra: `\n[otlp]\nendpoint = "http://127.0.0.1:${port}/v1/metrics"\nprotocol = "${protocol}"\ntemporality = "${temporality}"\ninterval = 1\ntimeout = 1\ntop_processes = 100\n`,
      });
      cleanups.push(async () => {
        await agent.stop();
      });

      await Promise.all([
        sinkTraffic(alice, { host: net.peerV4, port: sink.port, send: 300_000, reply: 50_000, ms: 300 }),
        sinkTraffic(bob, { host: net.peerV6, port: sink.port, send: 20_000, reply: 400_000, ms: 300 }),
      ]);
      // the exporter retries while the agent keeps polling, booking and answering
      const down = await waitFor('ubia status to show the OTLP exporter retrying', () => {
        const r = cli(agent.socket, ['status', '--json']);
        const otlp = (JSON.parse(r.stdout) as StatusResult).exporters.find((e) => e.name === 'otlp');
        return otlp?.state === 'degraded' && (otlp.extra!.failures as number) >= 2 ? otlp : undefined;
      });
      expect(down.detail).toContain(`retrying http://127.0.0.1:${port}/v1/metrics`);
      const ledgerUsers = () => {
        const res = JSON.parse(cli(agent.socket, ['users', '--since', '1h', '--json']).stdout) as UsersResult;
        const ours = res.users.filter((u) => u.uid === alice.uid || u.uid === bob.uid);
        return ours.length === 2 ? ours : undefined;
      };
      await waitFor('the ledger to book both users during the outage', ledgerUsers);
      expect(agent.proc.exitCode).toBeNull();

      const receiver = await startReceiver(port);
      cleanups.push(() => receiver.close());
      // the client sends an 8-byte header before its payload (test/support/traffic.py sink-client)
      const expected = { [alice.name]: { tx: 300_008, rx: 50_000 }, [bob.name]: { tx: 20_008, rx: 400_000 } };
      const points = (metric: string, attrs: Record<string, AttrValue>) =>
        receiver.requests.map((r) => find(decode(r), metric, attrs)).filter((ps) => ps.length > 0);
      /** What the receiver knows of a user's total: the latest cumulative point, or the sum
       *  of every delta point (each delivered exactly once). */
      const total = (name: string, metric: string, direction: string) => {
        const ps = points(metric, { 'user.name': name, 'network.io.direction': direction });
        for (const p of ps.flat()) expect(p.temporality).toBe(temporality);
        return temporality === 'cumulative' ? ps.at(-1)?.[0]?.value : ps.flat().reduce((sum, p) => sum + p.value, 0);
      };
      await waitFor('exports with both users\' payload bytes', () =>
        Object.entries(expected).every(([name, e]) =>
          total(name, 'ubia.user.network.payload.io', 'transmit') === e.tx && total(name, 'ubia.user.network.payload.io', 'receive') === e.rx,
        ) || undefined,
      );

      // wire figures: the same as the agent's own ledger shows (once the last packets of the
      // connections, booked in the same poll, have been exported too)
      const mismatches = () =>
        ledgerUsers()!.flatMap((u) => [
          [`${u.user} tx`, total(u.user, 'ubia.user.network.io', 'transmit'), u.txBytes],
          [`${u.user} rx`, total(u.user, 'ubia.user.network.io', 'receive'), u.rxBytes],
          [`${u.user} tx packets`, total(u.user, 'ubia.user.network.packets', 'transmit'), u.txPackets],
        ]).filter(([, exported, booked]) => exported !== booked);
      await waitFor('exported wire bytes and packets equal to the ledger', () => (mismatches().length === 0 ? true : undefined)).catch(() => {
        expect(mismatches()).toEqual([]);
      });

      await waitFor('ubia status to show the OTLP exporter delivering again', () =>
        (JSON.parse(cli(agent.socket, ['status', '--json']).stdout) as StatusResult).exporters.find((e) => e.name === 'otlp' && e.state === 'ok'),
      );

      // per process: the traffic clients (python3, run as each user), wire bytes at least the
      // payload (top_processes is large: other tests' traffic on a shared machine must not
      // push them out; the cut itself is checked above)
      const processTx = (name: string) => {
        const ps = points('process.network.io', { 'user.name': name, 'network.io.direction': 'transmit' }).flat();
        return temporality === 'cumulative' ? Math.max(0, ...ps.map((p) => p.value)) : ps.reduce((sum, p) => sum + p.value, 0);
      };
      await waitFor('per-process figures for both clients', () =>
        Object.entries(expected).every(([name, e]) => processTx(name) >= e.tx) || undefined,
      ).catch((err: Error) => {
        const seen = points('process.network.io', { 'network.io.direction': 'transmit' }).flat();
        throw new Error(`${err.message}; process.network.io transmit points: ${JSON.stringify(seen.map((p) => [p.attrs['user.name'], p.attrs['process.executable.name'], p.value]))}`);
      });

      // the agent's own health, as the agent fills it in (meter, poll timer, exporters), in
      // the export collected last (delta exports queued in the outage arrive after newer ones
      // were collected): once delivery has caught up, the OTLP queue is empty
      const collectedAt = (d: Decoded) => d.points.reduce((max, p) => (p.endNs > max ? p.endNs : max), 0n);
      const newest = () => receiver.requests.map(decode).reduce((a, b) => (collectedAt(b) > collectedAt(a) ? b : a));
      const otlpQueue = (d: Decoded) => find(d, 'ubia.exporter.queue.depth', { 'ubia.exporter': 'otlp' })[0]?.value;
      const health = await waitFor('an export collected after the queue drained', () => {
        const d = newest();
        return otlpQueue(d) === 0 ? d : undefined;
      });
      const one = (metric: string, attrs: Record<string, AttrValue> = {}) => {
        const ps = find(health, metric, attrs);
        expect(ps, `${metric} ${JSON.stringify(attrs)}`).toHaveLength(1);
        return ps[0]!;
      };
      expect(one('ubia.poll.duration').value).toBeGreaterThan(0);
      expect(one('ubia.poll.duration').value).toBeLessThan(1);
      expect(one('ubia.unattributed.io', { 'network.io.direction': 'receive' }).kind).toBe('sum');
      expect(one('ubia.meter.overflows', { 'ubia.map': 'flows' }).value).toBe(0);
      expect(one('ubia.exporter.queue.depth', { 'ubia.exporter': 'otlp' }).value).toBe(0);
      expect(one('ubia.exporter.dropped', { 'ubia.exporter': 'otlp' }).value).toBe(0);
    });
  }

  it('reports one test user\'s traffic in two Slurm jobs with their unit attributes, exact payload per job', async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const bed = await createTestbed('otlp-units', { users: 1, sinkPort: 9000 });
    cleanups.push(() => bed.remove());
    const slurm = slurmCgroups(`ubia-otlp-units-${process.pid}`);
    cleanups.push(async () => slurm.dispose());
    const [alice] = bed.users as [TestUser];
    const agent = await startAgent({
      dir: bed.dir,
      pinDir: bed.pinDir,
      extra: `\n[otlp]\nendpoint = "http://127.0.0.1:${receiver.port}/v1/metrics"\ninterval = 1\ntimeout = 1\ntop_units = 10\n`,
    });
    cleanups.push(async () => {
      await agent.stop();
    });
    const jobs = { 5101: { send: 300_000, reply: 50_000 }, 5102: { send: 120_000, reply: 700_000 } };
    await Promise.all(Object.entries(jobs).map(([job, t]) =>
      sinkTraffic(alice, { host: bed.net.peerV4, port: bed.sink.port, ...t, ms: 300, cgroup: slurm.step(Number(job), '0').dir })));

    // the client sends an 8-byte header before its payload (test/support/traffic.py sink-client)
    const latest = (d: Decoded, job: string, direction: string) =>
      find(d, 'ubia.unit.network.payload.io', { 'user.name': alice.name, 'ubia.job.id': job, 'network.io.direction': direction })[0]?.value;
    const d = await waitFor('an export with both jobs\' payload', () =>
      receiver.requests.map(decode).reverse().find((x) => Object.entries(jobs).every(([job, t]) => latest(x, job, 'transmit') === t.send + 8 && latest(x, job, 'receive') === t.reply)),
    );
    for (const job of Object.keys(jobs)) {
      const points = find(d, 'ubia.unit.network.payload.io', { 'ubia.job.id': job });
      expect(points).toHaveLength(2);
      for (const p of points) {
        expect(p.attrs).toMatchObject({ 'user.id': String(alice.uid), 'user.name': alice.name, 'ubia.unit.kind': 'step', 'ubia.unit.name': `job_${job}/step_0` });
        expect(p.attrs['systemd.unit']).toBeUndefined();
        expect(p.attrs['container.id']).toBeUndefined();
      }
    }
    // alice has no other traffic: her units' wire bytes add up to her per-user series
    for (const direction of ['transmit', 'receive']) {
      const units = find(d, 'ubia.unit.network.io', { 'user.name': alice.name, 'network.io.direction': direction });
      const userTotal = find(d, 'ubia.user.network.io', { 'user.name': alice.name, 'network.io.direction': direction })[0]!.value;
      expect(units.reduce((n, p) => n + p.value, 0)).toBe(userTotal);
    }
  });

  it('exports the Diameter peer\'s state and every exporter\'s queue as the agent sees them', async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const aaaPort = await closedPort(); // an AAA server that is down
    const bed = await createTestbed('otlp-health', { users: 0 });
    cleanups.push(() => bed.remove());
    const agent = await startAgent({
      dir: bed.dir,
      pinDir: bed.pinDir,
      extra:
        `\n[otlp]\nendpoint = "http://127.0.0.1:${receiver.port}/v1/metrics"\ninterval = 1\ntimeout = 1\n` +
        `\n[diameter]\norigin_realm = "example.net"\ndestination_realm = "example.net"\n` +
        `[[diameter.servers]]\nhost = "127.0.0.1"\nport = ${aaaPort}\n`,
    });
    cleanups.push(async () => {
      await agent.stop();
    });
    const status = JSON.parse(cli(agent.socket, ['status', '--json']).stdout) as StatusResult;
    const peerState = status.exporters.find((e) => e.name === 'diameter')!.peers![0]!.state;
    expect(peerState).not.toBe('open');

    const exported = await waitFor('an export with the Diameter peer', () =>
      receiver.requests.map(decode).find((d) => d.points.some((p) => p.metric === 'ubia.diameter.peer.state')),
    );
    const peer = find(exported, 'ubia.diameter.peer.state', { 'ubia.diameter.peer': `127.0.0.1:${aaaPort}` });
    expect(peer).toHaveLength(1);
    expect(peer[0]!.value).toBe(1);
    expect(['closed', 'connecting', 'wait-cea']).toContain(peer[0]!.attrs['ubia.diameter.peer.state']);
    const queues = find(exported, 'ubia.exporter.queue.depth', {}).map((p) => p.attrs['ubia.exporter']);
    expect(new Set(queues)).toEqual(new Set(['diameter', 'otlp']));
  });
});
