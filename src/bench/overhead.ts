// npm run bench:overhead — what ubia's programs cost the traffic they meter.
// Throughput with the meter attached vs detached, and vs the classic alternative (one
// nftables `meta skuid` counter rule per user), in interleaved rounds within one run so
// that the machine's noise hits every variant alike. Also: time to read 65,536 users.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openMeter, detachMeter, type Meter } from '../kernel/index.js';
import { createNetns, createUser, removeNetns, removeUser, type Netns, type TestUser } from './testbed.js';

const PIN_DIR = '/sys/fs/bpf/ubia-bench';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

type Variant = 'detached' | 'ubia' | 'nftables';
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

interface Sample {
  /** throughput in the workload's unit */
  rate: number;
  /** CPU seconds (client + server, user + system, as iperf3 reports them) per GB or per
   *  million packets: steadier than throughput on a shared 2-core machine */
  cpuPerUnit: number;
}

function iperf(w: Workload, user: TestUser, ns: Netns): Sample {
  const host = w.where === 'loopback' ? '127.0.0.1' : ns.nsV4;
  const port = String(5201 + Math.floor(Math.random() * 1000));
  // client and server pinned to CPUs 0 and 1: left to the scheduler, iperf3 on two
  // cores lands in one of two placements that differ by ~50% in throughput, which
  // drowned the meter's cost in earlier runs
  const serverCpu = availableParallelism() > 1 ? '1' : '0';
  const serverCmd = [...(w.where === 'veth' ? ['ip', 'netns', 'exec', ns.name] : []), 'taskset', '-c', serverCpu, 'iperf3'];
  const server = spawn(serverCmd[0]!, [...serverCmd.slice(1), '-s', '-1', '-p', port, '-B', host], { stdio: 'ignore' });
  try {
    execFileSync('sleep', ['0.3']);
    const out = execFileSync(
      'setpriv',
      [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', 'taskset', '-c', '0', 'iperf3', '-c', host, '-p', port, '-t', String(SECONDS), '-J', ...w.args],
      { encoding: 'utf8', timeout: (SECONDS + 20) * 1000 },
    );
    const r = JSON.parse(out).end;
    const cpu = r.cpu_utilization_percent;
    const cpuSeconds = ((cpu.host_total + cpu.remote_total) / 100) * r.sum_sent.seconds;
    if (w.unit === 'kpkt/s') return { rate: r.sum.packets / r.sum.seconds / 1000, cpuPerUnit: cpuSeconds / (r.sum.packets / 1e6) };
    return { rate: r.sum_received.bits_per_second / 1e9, cpuPerUnit: cpuSeconds / (r.sum_sent.bytes / 1e9) };
  } finally {
    server.kill('SIGKILL');
  }
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Fills the pinned user slots up to n users through bpftool's batch mode (as the kernel
 *  would: slot, then the meta map's count of used slots), then times reads. */
function readTiming(n: number): { ms: number; rowsMs: number; users: number } {
  const pin = `${PIN_DIR}-read`;
  const meter = openMeter({ pinDir: pin });
  const dir = mkdtempSync(join(tmpdir(), 'ubia-bench-'));
  try {
    const hex = (v: number, bytes: number) => Array.from({ length: bytes }, (_, i) => (i < 4 ? (v >>> (8 * i)) & 0xff : 0).toString(16).padStart(2, '0')).join(' ');
    const counters = Array.from({ length: 6 }, () => hex(1000, 8)).join(' ');
    // traffic meanwhile takes slots too: stop live counting from taking ours by reading
    // the count first and writing it last (a race here only costs the benchmark a user)
    const meta = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'lookup', 'pinned', `${pin}/maps/meta`, 'key', '0', '0', '0', '0'], { encoding: 'utf8' })) as {
      formatted?: { value: { abi_version: number; user_slots_used: number } };
    };
    const { abi_version: abi, user_slots_used: used } = meta.formatted!.value;
    const lines: string[] = [];
    for (let slot = used; slot < n; slot++) {
      const key = `${hex(100_000 + slot, 4)} 00 00 00 00`; // uid, scope external
      lines.push(`map update pinned ${pin}/maps/user_slots key hex ${hex(slot, 4)} value hex ${key} ${hex(1, 4)} 00 00 00 00 ${counters}`);
    }
    lines.push(`map update pinned ${pin}/maps/meta key hex 00 00 00 00 value hex ${hex(abi, 4)} ${hex(n, 4)}`);
    // bpftool's batch mode: one process for all the updates
    for (let i = 0; i < lines.length; i += 2000) {
      writeFileSync(join(dir, 'batch'), lines.slice(i, i + 2000).join('\n') + '\n');
      execFileSync('bpftool', ['batch', 'file', join(dir, 'batch')], { stdio: 'ignore' });
    }
    // the agent reads columns (typed arrays); rows are JS objects built from them
    const timed = (read: () => number) => {
      const times: number[] = [];
      let users = 0;
      for (let i = 0; i < 5; i++) {
        const t0 = process.hrtime.bigint();
        users = read();
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      return { ms: median(times), users };
    };
    const columns = timed(() => meter.readUserColumns().uid.length);
    const rows = timed(() => meter.readUsers().length);
    return { ms: columns.ms, rowsMs: rows.ms, users: columns.users };
  } finally {
    meter.close({ detach: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The kernel's own accounting of each program's run time (kernel.bpf_stats_enabled),
 *  over the veth workloads: nanoseconds per run, less sensitive to machine noise. */
function programCosts(user: TestUser, ns: Netns): Array<{ program: string; runs: number; 'ns/run': number }> {
  const meter = openMeter({ pinDir: PIN_DIR });
  meter.readInterfaces();
  execFileSync('sysctl', ['-qw', 'kernel.bpf_stats_enabled=1']);
  try {
    for (const w of WORKLOADS) iperf(w, user, ns);
    const progs = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' })) as Array<{ name?: string; run_time_ns?: number; run_cnt?: number }>;
    return progs
      .filter((p) => p.name?.startsWith('ubia_') && p.run_cnt)
      .map((p) => ({ program: p.name!, runs: p.run_cnt!, 'ns/run': Math.round(p.run_time_ns! / p.run_cnt!) }));
  } finally {
    execFileSync('sysctl', ['-qw', 'kernel.bpf_stats_enabled=0']);
    meter.close({ detach: true });
  }
}

function main() {
  const users = [createUser('ubia-b'), createUser('ubia-b')];
  const ns = createNetns(77);
  let meter: Meter | undefined;
  const results = new Map<string, Record<Variant, Sample[]>>();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // each round starts with another variant, so that no variant always runs first
      const order: Variant[] = ['detached', 'ubia', 'nftables'];
      for (const variant of [...order.slice(round % 3), ...order.slice(0, round % 3)]) {
        if (variant === 'ubia') {
          meter = openMeter({ pinDir: PIN_DIR });
          meter.readInterfaces();
        }
        nftables(users, variant === 'nftables');
        for (const w of WORKLOADS) {
          const r = results.get(w.name) ?? { detached: [], ubia: [], nftables: [] };
          r[variant].push(iperf(w, users[0]!, ns));
          results.set(w.name, r);
        }
        nftables(users, false);
        meter?.close({ detach: true });
        meter = undefined;
      }
      process.stderr.write(`round ${round + 1}/${ROUNDS} done\n`);
    }
    const of = (samples: Sample[], k: keyof Sample) => median(samples.map((x) => x[k]));
    const rows = WORKLOADS.map((w) => {
      const r = results.get(w.name)!;
      const base = of(r.detached, 'rate');
      const baseCpu = of(r.detached, 'cpuPerUnit');
      return {
        workload: w.name,
        unit: w.unit,
        detached: +base.toFixed(3),
        ubia: +of(r.ubia, 'rate').toFixed(3),
        nftables: +of(r.nftables, 'rate').toFixed(3),
        'ubia cost %': +((1 - of(r.ubia, 'rate') / base) * 100).toFixed(2),
        'nftables cost %': +((1 - of(r.nftables, 'rate') / base) * 100).toFixed(2),
        'ubia CPU/unit +%': +((of(r.ubia, 'cpuPerUnit') / baseCpu - 1) * 100).toFixed(2),
        'nftables CPU/unit +%': +((of(r.nftables, 'cpuPerUnit') / baseCpu - 1) * 100).toFixed(2),
      };
    });
    console.table(rows);
    const perRun = programCosts(users[0]!, ns);
    console.table(perRun);
    const read = readTiming(65_536);
    console.log(`read ${read.users} users' totals in ${read.ms.toFixed(1)} ms as columns (what the agent reads), ${read.rowsMs.toFixed(1)} ms as row objects (median of 5)`);
    console.log(JSON.stringify({ seconds: SECONDS, rounds: ROUNDS, rows, programCosts: perRun, readUsers: read }));
  } finally {
    meter?.close({ detach: true });
    detachMeter(PIN_DIR);
    nftables(users, false);
    removeNetns(ns);
    users.forEach(removeUser);
  }
}

main();
