// npm run bench:ipfix — IPFIX exporter throughput.
//   encode: FlowExport → data records packed into 1400-byte messages (no I/O)
//   end to end: exporter.flowEnded() for every flow → UDP on loopback → a receiver in a
//               worker thread that counts the datagrams and records it gets
// Reports records per second of the exporter's thread (wall and CPU) and bytes per record.
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import { ipfixConfigSchema } from '../src/export/ipfix/config.js';
import { createMessagePacker } from '../src/export/ipfix/encoding.js';
import { createIpfixExporter } from '../src/export/ipfix/exporter.js';
import type { FlowExport } from '../src/export/ipfix/flows.js';
import { createRecordEncoder } from '../src/export/ipfix/records.js';
import type { FlowSnapshot } from '../src/export/types.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '../test/support/wait.js';

const ENCODE_RECORDS = 2_000_000;
const E2E_FLOWS = 500_000; // two records each (one per direction)
const E2E_CHUNK = 2_000; // flows handed over per event-loop turn, as a poll would

function sampleFlow(i: number): FlowSnapshot {
  const now = Date.now();
  return {
    cookie: BigInt(i), family: i % 4 === 0 ? 6 : 4, protocol: i % 3 === 0 ? 17 : 6,
    localAddress: i % 4 === 0 ? '2001:db8::10' : '192.0.2.10', localPort: 30000 + (i % 30000),
    remoteAddress: i % 4 === 0 ? `2001:db8:1::${(i % 65535).toString(16)}` : `198.51.100.${i % 250}`, remotePort: 443,
    uid: 1000 + (i % 50), gid: 1000, pid: 2000 + (i % 500), comm: 'firefox', cgroupId: 4242n, scope: 'external',
    firstSeenMs: now - 10_000, lastSeenMs: now,
    rxBytes: 100_000 + i, txBytes: 5_000 + i, rxPackets: 80, txPackets: 40, rxPayloadBytes: 95_000, txPayloadBytes: 3_000,
    user: `user${i % 50}`,
  };
}

const config = (port: number) => ipfixConfigSchema.parse({ collectors: [{ address: '127.0.0.1', port, records: ['flows'] }] })!;

function benchEncode(): { perSec: number; bytesPerRecord: number } {
  const cfg = config(4739);
  const enc = createRecordEncoder(cfg.collectors[0]!, { pen: cfg.enterprise_number, ids: cfg.element_ids, profile: cfg.profile }, () => '/system.slice/firefox.scope');
  const flows = Array.from({ length: 1000 }, (_, i) => sampleFlow(i));
  const exports: FlowExport[] = flows.map((flow, i) => ({
    flow, direction: (i % 2) as 0 | 1, endReason: 3, octets: flow.txBytes, packets: flow.txPackets, payloadOctets: flow.txPayloadBytes,
    startMs: flow.firstSeenMs, endMs: flow.lastSeenMs,
  }));
  let bytes = 0;
  const packer = createMessagePacker({ maxBytes: 1400, observationDomainId: 1, sink: (m) => { bytes += m.bytes.length; } });
  const scratch = Buffer.allocUnsafe(enc.maxRecordBytes);
  const encode = (n: number) => {
    for (let i = 0; i < n; i++) {
      const { setId, length } = enc.encodeFlow(exports[i % exports.length]!, scratch);
      packer.addRecord(setId, scratch.subarray(0, length));
    }
    packer.flush();
  };
  encode(ENCODE_RECORDS / 10); // let the JIT settle first
  bytes = 0;
  const t0 = process.hrtime.bigint();
  encode(ENCODE_RECORDS);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { perSec: ENCODE_RECORDS / seconds, bytesPerRecord: bytes / ENCODE_RECORDS };
}

/** A UDP receiver on its own thread, so the exporter's thread is measured alone. */
const RECEIVER = `
const { parentPort } = require('node:worker_threads');
const dgram = require('node:dgram');
const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 32 << 20 });
let datagrams = 0, bytes = 0;
s.on('message', (m) => { datagrams++; bytes += m.length; });
s.bind(0, '127.0.0.1', () => parentPort.postMessage({ port: s.address().port }));
parentPort.on('message', () => { parentPort.postMessage({ datagrams, bytes }); s.close(); });
`;

interface EndToEnd { perSec: number; cpuPerSec: number; records: number; messages: number; received: number; bytesPerMessage: number }

async function benchEndToEnd(): Promise<EndToEnd> {
  const worker = new Worker(RECEIVER, { eval: true });
  const { port } = await new Promise<{ port: number }>((r) => worker.once('message', r));
  const spool = mkdtempSync(join(tmpdir(), 'ubia-bench-ipfix-'));
  const exporter = createIpfixExporter(config(port), { logger: pino({ level: 'silent' }), spoolDir: spool });
  const flows = Array.from({ length: 5000 }, (_, i) => sampleFlow(i));
  const cpu0 = process.threadCpuUsage(); // this thread only: the receiver runs on another
  const t0 = process.hrtime.bigint();
  for (let done = 0; done < E2E_FLOWS; done += E2E_CHUNK) {
    for (let i = done; i < done + E2E_CHUNK; i++) exporter.flowEnded({ ...flows[i % flows.length]!, cookie: BigInt(i) });
    await new Promise((r) => setImmediate(r));
  }
  await exporter.close();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.threadCpuUsage(cpu0);
  const { sent, messages } = (exporter.status().extra!.collectors as Array<{ sent: number; messages: number }>)[0]!;
  await sleep(200);
  worker.postMessage('report');
  const got = await new Promise<{ datagrams: number; bytes: number }>((r) => worker.once('message', r));
  await worker.terminate();
  rmSync(spool, { recursive: true, force: true });
  return {
    perSec: sent / seconds, cpuPerSec: sent / ((cpu.user + cpu.system) / 1e6),
    records: sent, messages, received: got.datagrams, bytesPerMessage: got.bytes / got.datagrams,
  };
}

const enc = benchEncode();
console.log(`encode:      ${Math.round(enc.perSec).toLocaleString('en')} records/s on one core; ${enc.bytesPerRecord.toFixed(1)} bytes/record on the wire (1400-byte messages, headers included)`);
const e2e = await benchEndToEnd();
console.log(`end to end:  ${Math.round(e2e.perSec).toLocaleString('en')} records/s (wall), ${Math.round(e2e.cpuPerSec).toLocaleString('en')} records per CPU-second of the exporter thread; `
  + `${e2e.records.toLocaleString('en')} records in ${e2e.messages.toLocaleString('en')} datagrams of ${Math.round(e2e.bytesPerMessage)} bytes; `
  + `${e2e.received.toLocaleString('en')} received (${(100 * (1 - e2e.received / e2e.messages)).toFixed(2)} % lost by the receiver)`);
console.log(JSON.stringify({ bench: 'ipfix', encode: enc, endToEnd: e2e }));
