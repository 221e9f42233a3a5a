// Unit tests of the tc programs (ubia_tc_ingress, ubia_tc_egress) through BPF_PROG_TEST_RUN,
// as Cilium's bpf/tests do: synthetic Ethernet frames, IPv4 and IPv6, TCP and UDP, run
// through the real programs of the built object by a small libbpf loader
// (test/bpf/tc-run.c); the per-interface counters must be the frames' L3 sizes, split into
// total and unattributed by whether a local socket takes the packet. GSO cannot be set up
// in a test run, so every frame is one packet. Needs root (loading BPF programs).
import { execFileSync } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const OBJECT = join(ROOT, 'build', 'native', 'ubia.bpf.o');
const TC_ACT_UNSPEC = 0xffffffff; // -1 as the run's u32 return value
const LO = 1; // a test run's packet arrives on the loopback device unless told otherwise

interface Wire {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}
interface Run {
  retvals: number[];
  total: Wire;
  unattributed: Wire;
}

const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_ARP = 0x0806;
const TCP = 6;
const UDP = 17;

function ethernet(type: number, l3: Buffer): Buffer {
  const eth = Buffer.alloc(14);
  Buffer.from([2, 0, 0, 0, 0, 2]).copy(eth, 0);
  Buffer.from([2, 0, 0, 0, 0, 1]).copy(eth, 6);
  eth.writeUInt16BE(type, 12);
  const frame = Buffer.concat([eth, l3]);
  // Ethernet pads a frame to its 60-byte minimum: the padding is no traffic
  return frame.length < 60 ? Buffer.concat([frame, Buffer.alloc(60 - frame.length)]) : frame;
}

function l4(protocol: number, sport: number, dport: number, payload: number): Buffer {
  if (protocol === UDP) {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(sport, 0);
    h.writeUInt16BE(dport, 2);
    h.writeUInt16BE(8 + payload, 4);
    return Buffer.concat([h, Buffer.alloc(payload, 0x75)]);
  }
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h[12] = 5 << 4; // data offset: 5 words
  h[13] = payload ? 0x18 : 0x02; // PSH|ACK with data, else SYN
  h.writeUInt16BE(65535, 14);
  return Buffer.concat([h, Buffer.alloc(payload, 0x75)]);
}

function ipv4(protocol: number, src: number[], dst: number[], body: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + body.length, 2);
  h[8] = 64;
  h[9] = protocol;
  Buffer.from(src).copy(h, 12);
  Buffer.from(dst).copy(h, 16);
  return ethernet(ETH_P_IP, Buffer.concat([h, body]));
}

function ipv6(protocol: number, src: Buffer, dst: Buffer, body: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(body.length, 4);
  h[6] = protocol;
  h[7] = 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  return ethernet(ETH_P_IPV6, Buffer.concat([h, body]));
}

const v6 = (last: number, prefix = [0x20, 0x01, 0x0d, 0xb8]) => {
  const a = Buffer.alloc(16);
  Buffer.from(prefix).copy(a);
  a[15] = last;
  return a;
};
const LOOPBACK6 = v6(1, []);
const DOC4_A = [198, 18, 0, 2];
const DOC4_B = [198, 18, 0, 1];
const LOOPBACK4 = [127, 0, 0, 1];

let dir: string;
let tcRun: string;
const run = (program: 'ubia_tc_ingress' | 'ubia_tc_egress', frames: Buffer[]): Run =>
  JSON.parse(execFileSync(tcRun, [OBJECT, program, String(LO), ...frames.map((f) => f.toString('hex'))], { encoding: 'utf8' })) as Run;
const ZERO: Wire = { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0 };

beforeAll(() => {
  if (!existsSync(OBJECT)) throw new Error(`${OBJECT} is missing: run npm run build (it compiles the BPF object)`);
  dir = mkdtempSync(join(tmpdir(), 'ubia-bpf-tc-'));
  tcRun = join(dir, 'tc-run');
  execFileSync('cc', ['-O2', '-Wall', '-I', join(ROOT, 'bpf'), join(ROOT, 'test', 'bpf', 'tc-run.c'), '-o', tcRun, '-lbpf']);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tc programs under BPF_PROG_TEST_RUN', () => {
  it('ingress: IPv4 TCP and UDP to no local socket count as received and unattributed, at their IP length', () => {
    const frames = [ipv4(TCP, DOC4_A, DOC4_B, l4(TCP, 40000, 9, 1000)), ipv4(UDP, DOC4_A, DOC4_B, l4(UDP, 40001, 9, 300))];
    const r = run('ubia_tc_ingress', frames);
    const bytes = 20 + 20 + 1000 + (20 + 8 + 300);
    expect(r.retvals).toEqual([TC_ACT_UNSPEC, TC_ACT_UNSPEC]); // other filters still run
    expect(r.total).toEqual({ ...ZERO, rxBytes: bytes, rxPackets: 2 });
    expect(r.unattributed).toEqual(r.total);
  });

  // A test run hands every frame a socket of its own (net/bpf/test_run.c: sk_alloc'd,
  // family set, no type, no storage): a full socket that is not one of the kernel's raw
  // control sockets, the class of a kernel TCP or UDP socket (NFS, a tunnel), which the
  // cgroup layer adopts for root. So egress frames of a test run are attributable; what
  // really leaves without a user socket (the control socket's RSTs, IPv4 and IPv6) is
  // tested on a veth in meter.test.ts.
  it('egress: IPv6 TCP and UDP count as sent at their IP length; the test run\'s own socket is attributable', () => {
    const frames = [ipv6(TCP, v6(1), v6(2), l4(TCP, 40000, 9, 1200)), ipv6(UDP, v6(1), v6(2), l4(UDP, 40001, 9, 64))];
    const r = run('ubia_tc_egress', frames);
    const bytes = 40 + 20 + 1200 + (40 + 8 + 64);
    expect(r.retvals).toEqual([TC_ACT_UNSPEC, TC_ACT_UNSPEC]);
    expect(r.total).toEqual({ ...ZERO, txBytes: bytes, txPackets: 2 });
    expect(r.unattributed).toEqual(ZERO);
  });

  it('a short frame counts its IP length, not the Ethernet padding', () => {
    const frame = ipv4(UDP, DOC4_A, DOC4_B, l4(UDP, 40000, 9, 4));
    expect(frame.length).toBe(60); // 14 + 32, padded
    expect(run('ubia_tc_ingress', [frame]).total).toEqual({ ...ZERO, rxBytes: 32, rxPackets: 1 });
  });

  it('frames that are not IP are not counted', () => {
    const arp = ethernet(ETH_P_ARP, Buffer.alloc(28));
    const r = run('ubia_tc_ingress', [arp]);
    expect(r.retvals).toEqual([TC_ACT_UNSPEC]);
    expect(r.total).toEqual(ZERO);
  });

  describe('ingress to a local socket is attributable (the cgroup program counts it for the owner)', () => {
    let tcp4: Server;
    let tcp6: Server;
    let udp4: UdpSocket;
    beforeAll(async () => {
      const listen = (host: string) =>
        new Promise<Server>((resolve) => {
          const s = createServer();
          s.listen(0, host, () => resolve(s));
        });
      tcp4 = await listen('127.0.0.1');
      tcp6 = await listen('::1');
      udp4 = createSocket('udp4');
      await new Promise<void>((r) => udp4.bind(0, '127.0.0.1', () => r()));
    });
    afterAll(async () => {
      await new Promise((r) => tcp4.close(r));
      await new Promise((r) => tcp6.close(r));
      await new Promise<void>((r) => udp4.close(() => r()));
    });
    const portOf = (s: Server) => (s.address() as AddressInfo).port;

    it('a TCP SYN to a listener (IPv4 and IPv6) and a UDP datagram to a bound socket', () => {
      const frames = [
        ipv4(TCP, LOOPBACK4, LOOPBACK4, l4(TCP, 50000, portOf(tcp4), 0)),
        ipv6(TCP, LOOPBACK6, LOOPBACK6, l4(TCP, 50001, portOf(tcp6), 0)),
        ipv4(UDP, LOOPBACK4, LOOPBACK4, l4(UDP, 50002, udp4.address().port, 100)),
      ];
      const r = run('ubia_tc_ingress', frames);
      expect(r.total).toEqual({ ...ZERO, rxBytes: 40 + 60 + 128, rxPackets: 3 });
      expect(r.unattributed).toEqual(ZERO);
    });

    it('and the same frames to a port nobody holds are unattributed', () => {
      const closed = portOf(tcp4) === 9 ? 10 : 9;
      const r = run('ubia_tc_ingress', [ipv4(TCP, LOOPBACK4, LOOPBACK4, l4(TCP, 50000, closed, 0))]);
      expect(r.unattributed).toEqual({ ...ZERO, rxBytes: 40, rxPackets: 1 });
    });
  });
});
