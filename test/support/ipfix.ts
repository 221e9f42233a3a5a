// Test helpers for the IPFIX exporter: sample records, real collectors (tshark capture on
// lo, a TCP sink whose bytes ipfixDump/ipfix2csv decode).
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import type { FlowSnapshot } from '../../src/export/types.js';
import { cgroup2Mount } from '../../src/kernel/cgroups.js';
import { ipfixConfigSchema, type IpfixConfig } from '../../src/export/ipfix/config.js';
import { freePort } from './testbed.js';
import { sleep, waitFor } from './wait.js';

export const run = promisify(execFile);
export const silentLogger = pino({ level: 'silent' });

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
    workload: { kind: 'service', name: 'curl-job.service', cgroupPath: '/system.slice/curl-job.service', cgroupId: 1234n },
    ...over,
  };
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
  /** starts reading (a sink created with `paused` leaves data in the socket buffers) */
  resume(): void;
  close(): Promise<void>;
}

export async function tcpSink(port: number, opts: { paused?: boolean } = {}): Promise<TcpSink> {
  const connections: Buffer[][] = [];
  const sockets = new Set<Socket>();
  let paused = opts.paused ?? false;
  const server: Server = createServer((s) => {
    const chunks: Buffer[] = [];
    connections.push(chunks);
    sockets.add(s);
    s.on('data', (d) => chunks.push(d));
    s.on('close', () => sockets.delete(s));
    if (paused) s.pause();
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    connections,
    bytes: () => Buffer.concat(connections.flat()),
    resume: () => {
      paused = false;
      for (const s of sockets) s.resume();
    },
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
      // "(pen/id) name : value"; ipfixDump prints PENs above 2^31 as negative numbers
      const field = /^\t\(-?[\d/]+\)\s*(\S+) : (?:\(len: \d+\) )?(.*)$/.exec(line);
      if (field) record[field[1]!] = field[2]!;
    }
  }
  return { messages, text: stdout };
}

/** python3-ipfix's ipfix2csv collecting over TCP on a loopback port (it collects over TCP
 *  only), decoding ubia's enterprise IEs with the shipped spec; prints one CSV line per
 *  data record that has all the `columns`. */
export async function startIpfix2csv(port: number, spec: string, columns: string[]): Promise<{ lines(): string[]; stop(): void }> {
  const collector = spawn('ipfix2csv', ['--collect', 'tcp', '--bind', '127.0.0.1', '--port', String(port), '--spec', spec, ...columns],
    { env: { ...process.env, PYTHONUNBUFFERED: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  collector.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  collector.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  try {
    // it prints this just before binding; exporters retry until the port is open
    await waitFor(`ipfix2csv to listen (${err})`, () => err.includes('starting TCP CP'), 10_000);
  } catch (e) {
    collector.kill('SIGKILL');
    throw e;
  }
  return {
    lines: () => out.trim().split('\n').filter((l) => l !== ''),
    stop: () => { collector.kill('SIGTERM'); },
  };
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

/** Frames tshark flags as malformed or with an expert warning/error (e.g. a sequence gap). */
export async function tsharkProblems(pcap: string, decodeAs: string): Promise<string> {
  const { stdout } = await run('tshark', ['-r', pcap, '-d', decodeAs, '-Y', '_ws.malformed || _ws.expert.severity >= "Warning"', '-T', 'fields', '-e', 'frame.number', '-e', '_ws.expert.message'], { maxBuffer: 64 << 20 });
  return stdout.trim();
}

/** The UDP payloads sent to `port` in a capture, one after the other: a file of IPFIX
 *  messages that ipfixDump reads. */
export async function udpPayloads(pcap: string, port: number, file: string): Promise<string> {
  const { stdout } = await run('tshark', ['-r', pcap, '-Y', `udp.dstport == ${port}`, '-T', 'fields', '-e', 'udp.payload'], { maxBuffer: 256 << 20 });
  writeFileSync(file, Buffer.concat(stdout.split('\n').filter((l) => l !== '').map((l) => Buffer.from(l.replace(/:/g, ''), 'hex'))));
  return file;
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

/** Text form of 4 or 16 address bytes (RFC 5952 for IPv6), to compare encoded addresses. */
export function formatAddress(a: Uint8Array): string {
  if (a.length === 4) return Array.from(a).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((a[i]! << 8) | a[i + 1]!).toString(16));
  // compress the longest run of zero groups (RFC 5952 §4.2)
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** The cgroup v2 this process runs in: its ID (the directory's inode) and path. */
export function ownCgroup(): { id: bigint; path: string } {
  const root = cgroup2Mount();
  const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (root === null || line === undefined) throw new Error('no cgroup v2 on this host: the cgroup path tests need one');
  const path = line.slice(3);
  return { id: statSync(join(root, path), { bigint: true }).ino, path };
}
