// What users without a quota pay for quota enforcement (issue 14: "bench:overhead with a
// quota on another user stays within 0.5 points of the figures without one"). The meter's
// packet programs read the uid filter for every packet, verdict or none, and hand a
// packet to the quota's program (a tail call) only when its uid has a verdict; the
// quota's connect/sendmsg programs are attached only while some verdict exists. So a
// verdict on another user changes, for this user's packets, only a bit they do not test,
// and adds a program to each connect() and unconnected sendmsg().
//
// Throughput on this shared machine moves by tens of points between phases, so the
// measure here is the CPU time the workload takes per byte it moves (iperf3's client and
// server threads and the softirq threads; time spent waiting for a CPU is not in it),
// in many short phases with everything identical (ubia's default-mode meter attached
// throughout, the same connection) but for one thing: a block verdict on another user
// (quota programs in place, phase B) or none (phase A). The phases run
// A B B A A B B A …: each A B or B A is a pair (a linear drift cancels over the two
// orders), and each B B or A A across two pairs is a null pair, the same measure between
// two phases that differ in nothing: the floor of the measurement.
// Second, independent figure: the run time (bpf_stats) per packet of the quota programs
// attached to the cgroup (the connect/sendmsg ones; the packet programs, tail-called,
// count in the meter's time) and of the meter's, as shares of the workload's CPU.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { openMeter, openQuotaEnforcer } from '../src/kernel/index.js';
import { freePort, type TestNet, type TestUser } from '../test/support/testbed.js';
import { sleep } from '../test/support/wait.js';
import { meterProgramIds, programTimes, timesSince, withBpfStats } from './bpf-stats.js';
import { ksoftirqdPids, processCpuNs } from './cpu.js';
import { median } from './figures.js';

/** A/B pairs per workload (each pair two phases) */
const PAIRS = Number(process.env.BENCH_QUOTA_PAIRS ?? 60);
/** ms measured per phase, after SETTLE_MS following the switch */
const PHASE_MS = Number(process.env.BENCH_QUOTA_PHASE_MS ?? 1000);
const SETTLE_MS = 200;
const STATS_MS = 4000;
const HOUR = 3_600_000;

interface QuotaWorkload {
  name: string;
  /** iperf3 client arguments after -c HOST */
  args: string[];
  /** loopback: client and server in the namespace (its loopback's counters are ours
   *  alone); veth: the client on the host, the server in the namespace */
  where: 'loopback' | 'veth';
}

const WORKLOADS: QuotaWorkload[] = [
  { name: 'TCP 64 B writes, loopback', args: ['-l', '64'], where: 'loopback' },
  { name: 'TCP 64 B writes, veth', args: ['-l', '64'], where: 'veth' },
  { name: 'UDP 64 B messages, loopback', args: ['-u', '-b', '0', '-l', '64'], where: 'loopback' },
  // below what the machine can send: at full speed the receiver drops datagrams, and how
  // many depends on the sender's speed, which changes the CPU per byte by itself
  { name: 'UDP 64 B messages at 25 Mbit/s (≈ 49 k/s), loopback', args: ['-u', '-b', '25M', '-l', '64'], where: 'loopback' },
  { name: 'TCP 64 KiB writes, veth', args: ['-l', '65536'], where: 'veth' },
];

/** Bytes and packets through an interface as /proc/<pid>/net/dev shows it (the net
 *  namespace of that process): received plus sent, but loopback's once (each packet it
 *  sends it also receives). */
function interfaceTraffic(pid: number | 'self', iface: string): { bytes: number; packets: number } {
  const line = readFileSync(`/proc/${pid}/net/dev`, 'utf8')
    .split('\n')
    .find((l) => l.trim().startsWith(`${iface}:`));
  if (!line) throw new Error(`no interface ${iface} in /proc/${pid}/net/dev`);
  const f = line.slice(line.indexOf(':') + 1).trim().split(/\s+/).map(Number);
  // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets …
  const rx = iface === 'lo' ? 0 : 1;
  return { bytes: rx * f[0]! + f[8]!, packets: rx * f[1]! + f[9]! };
}

interface Running {
  pids: number[];
  /** bytes and packets the workload has moved so far */
  traffic(): { bytes: number; packets: number };
  stop(): void;
}

/** An iperf3 transfer as `user` that runs until stopped; client on CPU 0, server on 1. */
async function startWorkload(w: QuotaWorkload, user: TestUser, net: TestNet): Promise<Running> {
  const host = w.where === 'loopback' ? '127.0.0.1' : net.peerV4;
  const port = String(await freePort());
  const inNs = ['ip', 'netns', 'exec', net.ns];
  const serverCpu = availableParallelism() > 1 ? '1' : '0';
  const server = spawn(inNs[0]!, [...inNs.slice(1), 'taskset', '-c', serverCpu, 'iperf3', '-s', '-1', '-p', port, '-B', host], { stdio: 'ignore' });
  await sleep(300);
  const client = spawn(
    w.where === 'loopback' ? inNs[0]! : 'setpriv',
    [
      ...(w.where === 'loopback' ? [...inNs.slice(1), 'setpriv'] : []),
      `--reuid=${user.uid}`,
      `--regid=${user.gid}`,
      '--clear-groups',
      ...['taskset', '-c', '0', 'iperf3', '-c', host, '-p', port, '-t', '86400', ...w.args],
    ],
    { stdio: 'ignore' },
  );
  let exited: string | undefined;
  for (const [name, p] of [['server', server], ['client', client]] as Array<[string, ChildProcess]>) {
    p.once('exit', (code, signal) => (exited ??= `iperf3 ${name} exited with ${code ?? signal} (${w.name})`));
  }
  await sleep(500); // the connection is up
  const [pid, iface] = w.where === 'loopback' ? ([server.pid!, 'lo'] as const) : (['self', net.hostInterface] as const);
  return {
    pids: [client.pid!, server.pid!],
    traffic: () => {
      if (exited) throw new Error(exited);
      return interfaceTraffic(pid, iface);
    },
    stop: () => {
      client.kill('SIGKILL');
      server.kill('SIGKILL');
    },
  };
}

/** One phase: the workload's CPU ns per byte over PHASE_MS, after SETTLE_MS. */
async function phase(run: Running, softirq: number[]): Promise<number> {
  await sleep(SETTLE_MS);
  const [c0, t0] = [processCpuNs([...run.pids, ...softirq]), run.traffic()];
  await sleep(PHASE_MS);
  const [c1, t1] = [processCpuNs([...run.pids, ...softirq]), run.traffic()];
  return (c1 - c0) / (t1.bytes - t0.bytes);
}

/** Median and a 95 % bootstrap interval of the median (resampling the pairs). */
function bootstrapMedian(xs: number[], resamples = 4000): { median: number; low: number; high: number } {
  const medians: number[] = [];
  for (let r = 0; r < resamples; r++) medians.push(median(xs.map(() => xs[Math.floor(Math.random() * xs.length)]!)));
  medians.sort((a, b) => a - b);
  return { median: median(xs), low: medians[Math.floor(resamples * 0.025)]!, high: medians[Math.floor(resamples * 0.975)]! };
}

const pts = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
/** "median [95 % interval of the median] (min–max), n" of points */
const summary = (d: number[]) => {
  const b = bootstrapMedian(d);
  return `${pts(b.median)} [${pts(b.low)}, ${pts(b.high)}] (${pts(Math.min(...d))}…${pts(Math.max(...d))}), n=${d.length}`;
};

/**
 * The A/B rounds and the bpf_stats phase for each workload, with ubia's default-mode
 * meter pinned under pinDir (its quota enforcement under pinDir/quota) and a block
 * verdict on `other` in the B phases. `user` runs the workload.
 */
export async function measureQuotaOverhead(pinDir: string, user: TestUser, other: TestUser, net: TestNet) {
  const meter = openMeter({ pinDir, mode: 'default' });
  meter.readInterfaces(); // attaches the tc counters to the veth
  const quota = openQuotaEnforcer({ pinDir });
  const attach = (on: boolean) => {
    if (on) quota.set({ uid: other.uid, action: { kind: 'block' }, untilMs: Date.now() + HOUR });
    else quota.clear(other.uid);
    if (quota.attached() !== on) throw new Error(`quota programs ${on ? 'not attached' : 'still attached'}`);
  };
  const softirq = ksoftirqdPids();
  const rows: Array<Record<string, string | number>> = [];
  const raw: Record<string, unknown> = {};
  try {
    for (const w of WORKLOADS.filter((x) => x.name.includes(process.env.BENCH_WORKLOADS ?? ''))) {
      const loadBefore = load();
      const run = await startWorkload(w, user, net);
      try {
        // A B B A A B B A …: the quota attached in the 2nd and 3rd phase of every four
        const phases: Array<{ quota: boolean; nsPerByte: number }> = [];
        for (let i = 0; i < 2 * PAIRS; i++) {
          const on = i % 4 === 1 || i % 4 === 2;
          attach(on);
          phases.push({ quota: on, nsPerByte: await phase(run, softirq) });
        }
        attach(false);
        // pairs (0,1), (2,3), …: quota against none; null pairs (1,2), (3,4), …: two
        // phases alike, oriented later/earlier and earlier/later in turn as the pairs are
        const cost = (x: number, y: number) => (x / y - 1) * 100;
        const ab: number[] = [];
        const nulls: number[] = [];
        for (let i = 0; i + 1 < phases.length; i++) {
          const [p, q] = [phases[i]!, phases[i + 1]!];
          if (i % 2 === 0) {
            const [b, a] = p.quota ? [p, q] : [q, p];
            ab.push(cost(b.nsPerByte, a.nsPerByte));
          } else {
            nulls.push(cost(q.nsPerByte, p.nsPerByte) * (i % 4 === 1 ? 1 : -1));
          }
        }
        const stats = await statsPhase(pinDir, run, softirq, attach);
        rows.push({
          workload: w.name,
          'CPU per byte, none': `${(median(phases.filter((p) => !p.quota).map((p) => p.nsPerByte)) * 1000).toFixed(0)} ns/KB`,
          'quota − none, points': summary(ab),
          'null pairs (floor)': summary(nulls),
          "quota programs' CPU / workload's (bpf_stats)": `${(stats.quotaShare * 100).toFixed(2)} %`,
          'quota ns/packet': stats.quotaNsPerPacket.toFixed(1),
          "meter programs' CPU / workload's": `${(stats.meterShare * 100).toFixed(2)} %`,
          'meter ns/packet': stats.meterNsPerPacket.toFixed(1),
          'load before → after': `${loadBefore} → ${load()}`,
        });
        raw[w.name] = { phases, ab, nulls, stats };
        process.stderr.write(`${w.name}: ${JSON.stringify(rows.at(-1))}\n`);
      } finally {
        run.stop();
      }
    }
  } finally {
    quota.close({ detach: true });
    meter.close({ detach: true });
  }
  return { rows, raw, pairs: PAIRS, phaseMs: PHASE_MS };
}

/** With the quota programs attached and bpf_stats on: their run time, and the meter's,
 *  per packet and as a share of the workload's CPU (bpf_stats adds ~30–40 ns to every
 *  run, included: upper bounds). */
async function statsPhase(pinDir: string, run: Running, softirq: number[], attach: (on: boolean) => void) {
  attach(true);
  try {
    return await withBpfStats(async () => {
      const quotaIds = meterProgramIds(`${pinDir}/quota`);
      // (the quota's programs use the meter's uid filter too: not the meter's)
      const meterIds = meterProgramIds(pinDir).filter((id) => !quotaIds.includes(id));
      await sleep(SETTLE_MS);
      const [q0, m0, c0, t0] = [programTimes(quotaIds), programTimes(meterIds), processCpuNs([...run.pids, ...softirq]), run.traffic()];
      await sleep(STATS_MS);
      const [q1, m1, c1, t1] = [programTimes(quotaIds), programTimes(meterIds), processCpuNs([...run.pids, ...softirq]), run.traffic()];
      const total = (t: ReturnType<typeof timesSince>) => [...t.values()].reduce((a, x) => a + x.ns, 0);
      const quotaPrograms = timesSince(q0, q1);
      const [quotaNs, meterNs] = [total(quotaPrograms), total(timesSince(m0, m1))];
      const packets = t1.packets - t0.packets;
      return {
        quotaShare: quotaNs / (c1 - c0),
        meterShare: meterNs / (c1 - c0),
        quotaNsPerPacket: quotaNs / packets,
        meterNsPerPacket: meterNs / packets,
        perRun: Object.fromEntries([...quotaPrograms].map(([name, t]) => [name, { runs: t.runs, nsPerRun: t.runs ? Math.round(t.ns / t.runs) : 0 }])),
      };
    });
  } finally {
    attach(false);
  }
}
