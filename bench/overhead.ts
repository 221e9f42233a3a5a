// npm run bench:overhead — what ubia's programs cost the traffic they meter.
// Each workload is one long iperf3 transfer (client and server pinned to their own CPUs)
// during which the bench switches between phases: detached, ubia in its default mode,
// detached, one nftables `meta skuid` counter rule per user (the classic alternative),
// detached, programs that do nothing at the default mode's hooks (bench/floor.bpf.c, the
// packet hooks: the floor for any meter there), detached, ubia in its precise mode,
// detached, empty programs at the precise mode's hooks (the packet hooks and the per-call
// tracepoints), and so on. Then what users without a quota pay for quota enforcement
// (bench/quota-overhead.ts; BENCH_QUOTA_ONLY=1: that alone).
// Each attached phase is compared with the detached phases on either side of it, in
// the same connection: between separate iperf3 runs this VM's throughput jumps between
// modes 20-50 % apart, which drowned a cost of a few percent. Intervals during which the
// variant changed are left out. The targets are differences (ubia default against
// nftables, ubia precise against its floor), taken round by round from phases a few
// seconds apart. Then, steadier than throughput on a shared machine: the programs' own
// CPU time (bpf_stats) as a share of the CPU time the transfer takes (its processes and
// the softirq threads), per mode, and each program's time per run.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { openMeter, detachMeter, type Meter } from '../src/kernel/index.js';
import { createNet, createUser, removeUser, type TestNet, type TestUser } from '../test/support/testbed.js';
import { sleep } from '../test/support/wait.js';
import { meterProgramIds, programIdsNamed, programTimes, timesSince, withBpfStats } from './bpf-stats.js';
import { ksoftirqdPids, processCpuNs } from './cpu.js';
import { median, spread } from './figures.js';
import { measureQuotaOverhead } from './quota-overhead.js';

const PIN_DIR = '/sys/fs/bpf/ubia-bench';
const FLOOR_PIN_DIR = '/sys/fs/bpf/ubia-bench-floor';
/** seconds per phase (iperf3 reports every half second; a phase's first second is left
 *  out). Short phases: the VM's throughput mode also changes within a connection, every
 *  10-20 s, and a phase should be compared with neighbours in the same mode. */
const PHASE_SECONDS = Number(process.env.BENCH_PHASE_SECONDS ?? 3);
/** rounds of the phases (each variant once, a detached phase between two) */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
/** phases per mode for the programs' CPU share */
const STATS_ROUNDS = Number(process.env.BENCH_STATS_ROUNDS ?? 4);

type Variant = 'detached' | 'default' | 'nftables' | 'default floor' | 'precise' | 'precise floor';
type Compared = Exclude<Variant, 'detached'>;
const COMPARED: Compared[] = ['default', 'nftables', 'default floor', 'precise', 'precise floor'];
/** issue 11's targets: a variant's cost against another's, in points, at most `points` */
const TARGETS: Array<{ name: string; variant: Compared; against: Compared; points: (w: Workload) => number }> = [
  { name: 'default − nftables', variant: 'default', against: 'nftables', points: (w) => (w.args.includes('-u') ? 0 : 1) },
  { name: 'precise − its floor', variant: 'precise', against: 'precise floor', points: () => 1 },
];
interface Workload {
  name: string;
  /** iperf3 client arguments after -c HOST */
  args: string[];
  where: 'loopback' | 'veth';
  /** report bits/s or packets/s */
  unit: 'Gbit/s' | 'kpkt/s';
}

const WORKLOADS: Workload[] = [
  { name: 'TCP 64 KiB writes, loopback', args: ['-l', '65536'], where: 'loopback', unit: 'Gbit/s' },
  { name: 'TCP 64 B writes, loopback', args: ['-l', '64'], where: 'loopback', unit: 'Gbit/s' },
  { name: 'TCP 64 KiB writes, veth', args: ['-l', '65536'], where: 'veth', unit: 'Gbit/s' },
  { name: 'TCP 64 B writes, veth', args: ['-l', '64'], where: 'veth', unit: 'Gbit/s' },
  { name: 'UDP 64 B messages, loopback', args: ['-u', '-b', '0', '-l', '64'], where: 'loopback', unit: 'kpkt/s' },
];

/** One iperf3 report interval (half a second): its rate in the workload's unit, and when it ended. */
interface Interval {
  rate: number;
  seconds: number;
  endedMs: number;
}

// "[  5]   3.00-4.00   sec  3.25 GBytes  27895329 Kbits/sec    2    895 KBytes" (TCP: then
// retransmits and window) or "... 178481 Kbits/sec  348600" (UDP: then datagrams)
const INTERVAL_LINE = /^\[\s*\d+\]\s+([\d.]+)-([\d.]+)\s+sec\s+[\d.]+ \w?Bytes\s+([\d.]+) Kbits\/sec(?:\s+(\d+))?/;

/**
 * Runs one iperf3 transfer of `seconds` as `user` while `during` runs (it switches
 * variants); resolves with the per-second intervals as they arrived.
 */
async function iperfRun(w: Workload, user: TestUser, net: TestNet, seconds: number, during: (pids: number[]) => Promise<void>): Promise<Interval[]> {
  const host = w.where === 'loopback' ? '127.0.0.1' : net.peerV4;
  const port = String(5201 + Math.floor(Math.random() * 1000));
  // client and server pinned to CPUs 0 and 1: left to the scheduler, iperf3 on two
  // cores lands in one of two placements that differ by ~50% in throughput
  const serverCpu = availableParallelism() > 1 ? '1' : '0';
  const serverCmd = [...(w.where === 'veth' ? ['ip', 'netns', 'exec', net.ns] : []), 'taskset', '-c', serverCpu, 'iperf3'];
  const server = spawn(serverCmd[0]!, [...serverCmd.slice(1), '-s', '-1', '-p', port, '-B', host], { stdio: 'ignore' });
  try {
    execFileSync('sleep', ['0.3']);
    const client = spawn(
      'setpriv',
      [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', 'taskset', '-c', '0', 'iperf3', '-c', host, '-p', port, '-t', String(seconds), '-i', '0.5', '-f', 'k', '--forceflush', ...w.args],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const intervals: Interval[] = [];
    createInterface({ input: client.stdout! }).on('line', (line) => {
      const m = INTERVAL_LINE.exec(line);
      if (!m) return;
      const len = Number(m[2]) - Number(m[1]);
      if (len <= 0 || len > 1.5) return; // the summary lines at the end
      const rate = w.unit === 'kpkt/s' ? Number(m[4]) / len / 1000 : Number(m[3]) / 1e6;
      intervals.push({ rate, seconds: len, endedMs: performance.now() });
    });
    let failed: string | undefined;
    client.once('exit', (code, signal) => {
      if (code !== 0 && signal !== 'SIGTERM') failed = `iperf3 client exited with ${code ?? signal} (${w.name})`;
    });
    await during([client.pid!, server.pid!]);
    client.kill('SIGTERM');
    if (failed) throw new Error(failed);
    return intervals;
  } finally {
    server.kill('SIGKILL');
  }
}

/** A phase of one variant: the time from when it was in place to when the next began. */
interface Phase {
  variant: Variant;
  fromMs: number;
  toMs: number;
  /** CPU time the transfer took (its processes and the softirq threads) from the phase's
   *  second second to its end, and that window's length */
  cpuNs: number;
  cpuWindowMs: number;
}

/** The mean rate of the intervals wholly inside a phase, its first second left out (the
 *  first packets after attaching create the socket's storage). */
function phaseRate(p: Phase, intervals: Interval[]): number | undefined {
  const inside = intervals.filter((i) => i.endedMs - i.seconds * 1000 >= p.fromMs + 1000 && i.endedMs <= p.toMs);
  if (inside.length === 0) return undefined;
  return inside.reduce((a, i) => a + i.rate, 0) / inside.length;
}

/** bench/floor.bpf.c and its loader (bench/floor-loader.c), built into dir: the hooks
 *  of the default mode (packets) or of the precise mode (packets and calls). */
interface Floor {
  attach(hooks: 'packets' | 'packets and calls'): void;
  detach(): void;
}

function buildFloor(dir: string, net: TestNet): Floor {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const object = join(dir, 'floor.bpf.o');
  const loader = join(dir, 'floor-loader');
  // bpf/vmlinux.h is made by `npm run build`
  execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-I', join(root, 'bpf'), '-c', join(root, 'bench', 'floor.bpf.c'), '-o', object]);
  execFileSync('cc', ['-O2', join(root, 'bench', 'floor-loader.c'), '-o', loader, '-lbpf']);
  const ifindex = readFileSync(`/sys/class/net/${net.hostInterface}/ifindex`, 'utf8').trim();
  return {
    attach: (hooks) => {
      mkdirSync(FLOOR_PIN_DIR, { recursive: true });
      execFileSync(loader, ['attach', object, FLOOR_PIN_DIR, ifindex, ...(hooks === 'packets' ? ['packets'] : [])]);
    },
    detach: () => {
      execFileSync(loader, ['detach', ifindex]);
      rmSync(FLOOR_PIN_DIR, { recursive: true, force: true }); // the links go with their pins
    },
  };
}

/** Puts a variant in place (the previous one removed first); returns the meter, if any. */
function variantSetter(users: TestUser[], floor: Floor): (v: Variant) => void {
  let meter: Meter | undefined;
  let floorOn = false;
  return (v) => {
    meter?.close({ detach: true });
    meter = undefined;
    if (floorOn) floor.detach();
    floorOn = false;
    nftables(users, v === 'nftables');
    if (v === 'default' || v === 'precise') {
      meter = openMeter({ pinDir: PIN_DIR, mode: v });
      meter.readInterfaces(); // attaches the tc counters to the veth
    }
    if (v === 'default floor' || v === 'precise floor') {
      floor.attach(v === 'default floor' ? 'packets' : 'packets and calls');
      floorOn = true;
    }
  };
}

/** Per variant and round, a phase's figure relative to the mean of the detached phases
 *  before and after it (undefined where one of the three has none). */
function relative(phases: Phase[], figure: (p: Phase) => number | undefined): Record<Compared, Array<number | undefined>> {
  const out = Object.fromEntries(COMPARED.map((v) => [v, [] as Array<number | undefined>])) as Record<Compared, Array<number | undefined>>;
  phases.forEach((p, i) => {
    if (p.variant === 'detached') return;
    const [x, before, after] = [figure(p), figure(phases[i - 1]!), phases[i + 1] && figure(phases[i + 1]!)];
    out[p.variant].push(x !== undefined && before !== undefined && after !== undefined ? x / ((before + after) / 2) : undefined);
  });
  return out;
}

/**
 * One workload: an iperf3 transfer through rounds of detached, default, detached,
 * nftables, detached, default floor, ... Returns, per variant and round, each phase's
 * rate and its CPU time per unit of traffic (per Gbit or per kpkt), each relative to
 * the detached phases around it. The rate suffers from everything else the machine
 * runs; the CPU time per unit much less (time the transfer waits for a CPU is not in it).
 */
async function measure(
  w: Workload,
  users: TestUser[],
  net: TestNet,
  floor: Floor,
): Promise<{ detached: number[]; ratios: Record<Compared, Array<number | undefined>>; cpuRatios: Record<Compared, Array<number | undefined>>; phases: Array<[Variant, number | undefined]> }> {
  const sequence: Variant[] = [];
  for (let r = 0; r < ROUNDS; r++) for (const v of COMPARED) sequence.push('detached', v);
  sequence.push('detached');
  const phases: Phase[] = [];
  const setVariant = variantSetter(users, floor);
  // attaching takes ~0.7 s a time (the verifier): iperf3 runs long enough, and is
  // stopped when the phases are done
  const seconds = sequence.length * (PHASE_SECONDS + 1) + 5;
  const softirq = ksoftirqdPids();
  const intervals = await iperfRun(w, users[0]!, net, seconds, async (pids) => {
    try {
      await sleep(500); // the connection is up
      for (const variant of sequence) {
        setVariant(variant);
        const fromMs = performance.now();
        await sleep(1000);
        const [c0, t0] = [processCpuNs([...pids, ...softirq]), performance.now()];
        await sleep((PHASE_SECONDS - 1) * 1000);
        const [c1, t1] = [processCpuNs([...pids, ...softirq]), performance.now()];
        phases.push({ variant, fromMs, toMs: t1, cpuNs: c1 - c0, cpuWindowMs: t1 - t0 });
      }
    } finally {
      setVariant('detached');
    }
  });
  const detached = phases.filter((p) => p.variant === 'detached').flatMap((p) => phaseRate(p, intervals) ?? []);
  const ratios = relative(phases, (p) => phaseRate(p, intervals));
  const cpuRatios = relative(phases, (p) => {
    const rate = phaseRate(p, intervals);
    return rate ? p.cpuNs / (rate * (p.cpuWindowMs / 1000)) : undefined;
  });
  return { detached, ratios, cpuRatios, phases: phases.map((p) => [p.variant, phaseRate(p, intervals)]) };
}

function nftables(users: TestUser[], on: boolean) {
  if (!on) {
    spawnSync('nft', ['delete', 'table', 'inet', 'ubia_bench']);
    return;
  }
  const rules = users.map((u) => `    meta skuid ${u.uid} counter`).join('\n');
  const conf = `table inet ubia_bench {\n  chain out {\n    type filter hook output priority 0; policy accept;\n${rules}\n  }\n}\n`;
  execFileSync('nft', ['-f', '-'], { input: conf });
}

/** the meter's two modes, and the precise mode's empty programs: what bpf_stats itself
 *  adds to a program run (with the dispatch, which bpf_stats does not see) */
const MODES = ['default', 'precise', 'precise floor'] as const;

/**
 * The programs' own CPU against the transfer's, per mode: one iperf3 transfer per
 * workload, alternating default, precise and precise-floor phases (STATS_ROUNDS each); in each phase's
 * last PHASE_SECONDS − 1 seconds, the meter's programs' run time (bpf_stats) over the
 * CPU time of iperf3's client and server and of the softirq threads. Also each program's
 * time per run over all phases.
 */
async function cpuShares(w: Workload, users: TestUser[], net: TestNet, floor: Floor) {
  const shares: Record<(typeof MODES)[number], number[]> = { default: [], precise: [], 'precise floor': [] };
  const perProgram = new Map<string, { ns: number; runs: number }>();
  const softirq = ksoftirqdPids();
  const setVariant = variantSetter(users, floor);
  await withBpfStats(() =>
    iperfRun(w, users[0]!, net, STATS_ROUNDS * MODES.length * (PHASE_SECONDS + 2) + 5, async (pids) => {
      try {
        await sleep(500);
        for (let r = 0; r < STATS_ROUNDS; r++) {
          for (const mode of MODES) {
            setVariant(mode);
            const ids = mode === 'precise floor' ? programIdsNamed('floor_') : meterProgramIds(PIN_DIR);
            await sleep(1000); // sockets take storage, the tc counters attach
            const p0 = programTimes(ids);
            const c0 = processCpuNs([...pids, ...softirq]);
            await sleep((PHASE_SECONDS - 1) * 1000);
            const progs = timesSince(p0, programTimes(ids));
            const cpu = processCpuNs([...pids, ...softirq]) - c0;
            let ns = 0;
            for (const [name, t] of progs) {
              ns += t.ns;
              const acc = perProgram.get(`${mode}: ${name}`) ?? { ns: 0, runs: 0 };
              perProgram.set(`${mode}: ${name}`, { ns: acc.ns + t.ns, runs: acc.runs + t.runs });
            }
            if (cpu > 0) shares[mode].push(ns / cpu);
          }
        }
      } finally {
        setVariant('detached');
      }
    }),
  );
  return { shares, perProgram };
}

const points = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;

/** The meter's cost per workload: the A/B phases and the programs' CPU shares. */
async function meterOverhead(users: TestUser[], net: TestNet, dir: string) {
  const floor = buildFloor(dir, net);
  const rows: Array<Record<string, string>> = [];
  const targets: Array<Record<string, string>> = [];
  const shares: Array<Record<string, string>> = [];
  const perRun: Array<Record<string, string | number>> = [];
  const phases: Record<string, Array<[Variant, number | undefined]>> = {};
  const raw: Record<string, unknown> = {};
  // BENCH_WORKLOADS=veth (say): only the workloads whose name contains it
  for (const w of WORKLOADS.filter((x) => x.name.includes(process.env.BENCH_WORKLOADS ?? ''))) {
    const r = await measure(w, users, net, floor);
    // two measures of one run: throughput lost, and CPU time added per unit of traffic
    const measures = [
      { name: 'throughput lost', ratios: r.ratios, cost: (x: number) => (1 - x) * 100 },
      { name: 'CPU per unit added', ratios: r.cpuRatios, cost: (x: number) => (x - 1) * 100 },
    ];
    for (const m of measures) {
      const costs = (v: Compared) => m.ratios[v].flatMap((x) => (x === undefined ? [] : [m.cost(x)]));
      rows.push({
        workload: w.name,
        measure: m.name,
        detached: `${median(r.detached).toPrecision(4)} ${w.unit}`,
        ...Object.fromEntries(COMPARED.map((v) => [v, spread(costs(v), (x) => `${x.toFixed(1)} %`)])),
      });
      for (const t of TARGETS) {
        // round by round: the two phases of one round are seconds apart
        const diffs = m.ratios[t.variant].flatMap((x, i) => {
          const y = m.ratios[t.against][i];
          return x === undefined || y === undefined ? [] : [m.cost(x) - m.cost(y)];
        });
        targets.push({
          workload: w.name,
          measure: m.name,
          target: `${t.name} ≤ ${t.points(w)} point${t.points(w) === 1 ? '' : 's'}`,
          'points, median (range) of rounds': spread(diffs, points),
          met: diffs.length ? (median(diffs) <= t.points(w) ? 'yes' : 'no') : '?',
        });
      }
    }
    phases[w.name] = r.phases.map(([v, rate]) => [v, rate === undefined ? undefined : +rate.toPrecision(4)]);
    process.stderr.write(`${w.name}: done (${COMPARED.map((v) => `${r.ratios[v].filter((x) => x !== undefined).length} ${v}`).join(', ')} phases compared)\n`);
    const c = await cpuShares(w, users, net, floor);
    shares.push({ workload: w.name, ...Object.fromEntries(MODES.map((m) => [`${m}: programs' CPU / transfer's CPU`, spread(c.shares[m], (x) => `${(x * 100).toFixed(2)} %`)])) });
    for (const [program, t] of c.perProgram) if (t.runs) perRun.push({ workload: w.name, program, runs: t.runs, 'ns/run': Math.round(t.ns / t.runs) });
    raw[w.name] = { ratios: r.ratios, cpuRatios: r.cpuRatios, shares: c.shares };
  }
  console.log(`cost against the detached phases around each phase: throughput lost, and CPU time (the transfer's processes and softirq threads) added per unit of traffic; median (range) of ${ROUNDS} rounds`);
  console.table(rows);
  console.table(targets);
  console.log(`programs' own CPU (bpf_stats) as a share of the transfer's CPU; median (range) of ${STATS_ROUNDS} phases per mode`);
  console.table(shares);
  console.table(perRun);
  console.log(JSON.stringify({ phaseSeconds: PHASE_SECONDS, rounds: ROUNDS, rows, targets, shares, raw, phases, programCosts: perRun }));
}

async function main() {
  const users = [createUser('ubia-b'), createUser('ubia-b')];
  const net = createNet();
  const dir = mkdtempSync(join(tmpdir(), 'ubia-bench-'));
  try {
    if (!process.env.BENCH_QUOTA_ONLY) await meterOverhead(users, net, dir);
    const q = await measureQuotaOverhead(PIN_DIR, users[0]!, users[1]!, net);
    console.log(
      `quota enforcement attached (a block verdict on another user) against detached, ubia default attached throughout: CPU time per byte of the workload, points; median [95 % bootstrap interval of the median] (min…max) of ${q.pairs} A/B pairs of ${q.phaseMs} ms phases; null pairs: two phases alike`,
    );
    console.table(q.rows);
    console.log(JSON.stringify({ quota: q }));
  } finally {
    detachMeter(PIN_DIR);
    rmSync(FLOOR_PIN_DIR, { recursive: true, force: true });
    nftables(users, false);
    net.remove(); // its veth, and the floor's tc filters on it
    users.forEach(removeUser);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
