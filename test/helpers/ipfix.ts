// Test helpers for the IPFIX exporter: sample records, real collectors (tshark capture on
// lo, a TCP sink whose bytes ipfixDump/ipfix2csv decode), and loopback port allocation.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import type { FlowSnapshot } from '../../src/export/types.js';
import { ipfixConfigSchema, type IpfixConfig } from '../../src/export/ipfix/config.js';

export const run = promisify(execFile);
export const silentLogger = pino({ level: 'silent' });

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Parses an [ipfix] section the way the agent does (schema defaults applied). */
export function ipfixConfig(section: unknown): IpfixConfig {
  return ipfixConfigSchema.parse(section)!;
}

let cookie = 1000n;
export function flowSnapshot(over: Partial<FlowSnapshot> = {}): FlowSnapshot {
  const now = Date.now();
  return {
    cookie: cookie++, family: 4, protocol: 6,
    localAddress: '127.0.0.1', localPort: 40000, remoteAddress: '127.0.0.2', remotePort: 443,
    uid: 1001, gid: 1001, pid: 4242, comm: 'curl', cgroupId: 1234n, scope: 'loopback',
    firstSeenMs: now - 5000, lastSeenMs: now,
    rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxPayloadBytes: 0, txPayloadBytes: 0,
    user: 'ubia-test-alice',
    ...over,
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms until it holds or `timeoutMs` passes. */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** A loopback port that is free for TCP (and, in practice, UDP) right now. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A UDP socket bound on the port, so the exporter's datagrams have a receiver. */
export async function udpSink(port: number): Promise<{ datagrams: Buffer[]; close(): Promise<void> }> {
  const s = createSocket('udp4');
  const datagrams: Buffer[] = [];
  s.on('message', (m) => datagrams.push(m));
  await new Promise<void>((r) => s.bind(port, '127.0.0.1', r));
  return { datagrams, close: () => new Promise((r) => s.close(() => r())) };
}

/** A TCP collector that keeps the bytes of each connection (an IPFIX file per connection). */
export interface TcpSink {
  connections: Buffer[][];
  bytes(): Buffer;
  close(): Promise<void>;
}

export async function tcpSink(port: number): Promise<TcpSink> {
  const connections: Buffer[][] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    const chunks: Buffer[] = [];
    connections.push(chunks);
    sockets.add(s);
    s.on('data', (d) => chunks.push(d));
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    connections,
    bytes: () => Buffer.concat(connections.flat()),
    close: async () => {
      const closed = new Promise((r) => server.close(r));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

export interface DumpedMessage {
  sequence: number;
  domain: number;
  /** data records: IE name → value as ipfixDump prints it (strings without the "(len: n) ") */
  records: Array<Record<string, string>>;
}

/** Decodes a file of IPFIX messages with libfixbuf's ipfixDump (an independent collector),
 *  loading ubia's enterprise IEs from `elementsXml`. */
export async function ipfixDump(file: string, elementsXml: string): Promise<{ messages: DumpedMessage[]; text: string }> {
  const { stdout } = await run('ipfixDump', ['-e', elementsXml, '-i', file], { maxBuffer: 256 << 20 });
  const messages: DumpedMessage[] = [];
  let record: Record<string, string> | null = null;
  for (const line of stdout.split('\n')) {
    const seq = /sequence number: (\d+)/.exec(line);
    const domain = /observation domain id: (\d+)/.exec(line);
    if (line.startsWith('--- Message Header ---')) messages.push({ sequence: -1, domain: -1, records: [] });
    else if (domain) messages.at(-1)!.domain = Number(domain[1]);
    if (seq) messages.at(-1)!.sequence = Number(seq[1]);
    else if (line.startsWith('--- data record')) messages.at(-1)!.records.push(record = {});
    else if (line.startsWith('--- template record')) record = null;
    else if (record) {
      const field = /^\t\(-?[\d/]+\)\s*(\S+) : (?:\(len: \d+\) )?(.*)$/.exec(line);
      if (field) record[field[1]!] = field[2]!;
    }
  }
  return { messages, text: stdout };
}

/** tshark capturing on lo into a pcap file until stopped. "Capturing on" is printed before
 *  packets are really seen, so readiness is proven by a probe datagram showing up. */
export async function startCapture(filter: string, dir: string): Promise<{ stop(): Promise<string> }> {
  const file = join(dir, 'capture.pcapng');
  const probePort = await freePort();
  const child: ChildProcess = spawn('tshark', ['-i', 'lo', '-l', '-P', '-f', `(${filter}) or (udp port ${probePort})`, '-w', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { output += d.toString(); });
  const probe = createSocket('udp4');
  try {
    const deadline = Date.now() + 15_000;
    while (!output.includes(`→ ${probePort} Len=`)) {
      if (child.exitCode !== null) throw new Error(`tshark exited (${child.exitCode}) before capturing: ${output}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`tshark did not see a probe packet within 15 s: ${output}`);
      }
      probe.send('probe', probePort, '127.0.0.1');
      await sleep(100);
    }
  } finally {
    probe.close();
  }
  return {
    async stop() {
      await sleep(300); // let the last packets reach the capture buffer
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGINT');
      await Promise.race([exited, sleep(10_000).then(() => { child.kill('SIGKILL'); })]);
      return file;
    },
  };
}

/** Field values per IPFIX data record (one row per cflow flow), via tshark -T fields. */
export async function tsharkFields(pcap: string, decodeAs: string, fields: string[], displayFilter = 'cflow'): Promise<string[][]> {
  const args = ['-r', pcap, '-d', decodeAs, '-Y', displayFilter, '-T', 'fields', '-E', 'separator=\t', '-E', 'occurrence=a', '-E', 'aggregator=|'];
  for (const f of fields) args.push('-e', f);
  const { stdout } = await run('tshark', args, { maxBuffer: 64 << 20 });
  return stdout.split('\n').filter((l) => l.length > 0).map((l) => l.split('\t'));
}

/** Frames tshark flags as malformed or with an expert warning/error (e.g. a sequence gap). */
export async function tsharkProblems(pcap: string, decodeAs: string): Promise<string> {
  const { stdout } = await run('tshark', ['-r', pcap, '-d', decodeAs, '-Y', '_ws.malformed || _ws.expert.severity >= "Warning"', '-T', 'fields', '-e', 'frame.number', '-e', '_ws.expert.message'], { maxBuffer: 64 << 20 });
  return stdout.trim();
}

export interface TsharkMessage {
  frame: number;
  sequence: number;
  domain: number;
  /** data records of the message, in order: tshark field name → value */
  records: Array<Record<string, string> & { setId: string }>;
}

/** The IPFIX messages tshark decodes in a capture, with their data records (tshark -T json). */
export async function tsharkMessages(pcap: string, decodeAs: string): Promise<TsharkMessage[]> {
  const { stdout } = await run('tshark', ['-r', pcap, '-d', decodeAs, '-Y', 'cflow', '-T', 'json'], { maxBuffer: 512 << 20 });
  const frames = JSON.parse(stdout) as Array<{ _source: { layers: Record<string, unknown> } }>;
  const out: TsharkMessage[] = [];
  for (const f of frames) {
    const layers = f._source.layers;
    const frame = Number((layers.frame as Record<string, string>)['frame.number']);
    const cflows = Array.isArray(layers.cflow) ? layers.cflow : [layers.cflow];
    for (const c of cflows as Array<Record<string, unknown>>) {
      const msg: TsharkMessage = { frame, sequence: Number(c['cflow.sequence']), domain: Number(c['cflow.od_id']), records: [] };
      for (const [key, set] of Object.entries(c)) {
        const id = /^Set \d+ \[id=(\d+)\]/.exec(key);
        if (!id || Number(id[1]) < 256) continue;
        for (const [flowKey, rec] of Object.entries(set as Record<string, unknown>)) {
          if (flowKey.startsWith('Flow ')) msg.records.push({ ...(rec as Record<string, string>), setId: id[1]! });
        }
      }
      out.push(msg);
    }
  }
  return out;
}
