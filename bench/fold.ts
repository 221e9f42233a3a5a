// npm run bench:fold — what a fold costs per open socket (issue 11: ≤ 1 µs).
// A fold (what the agent runs before each poll's reads) is the census (iter/task_file over
// every process's files, default mode) and then the fold route's iterators over every
// socket. Its cost grows with the sockets open on the host: this bench times folds with
// SOCKETS extra sockets held (idle, and after each moved a few bytes) and without them,
// interleaved round by round, and takes the difference per socket. bpf_stats splits it into
// the programs' own time per socket visited and the kernel's iteration around them.
// Root; run it while no system test runs (flock /tmp/ubia-systest.lock).
import dgram from 'node:dgram';
import net from 'node:net';
import { openMeter, detachMeter, type Meter } from '../src/kernel/index.js';
import { meterProgramIds, programTimes, timesSince, withBpfStats, type ProgramTimes } from './bpf-stats.js';
import { median, spread } from './figures.js';

const PIN_DIR = '/sys/fs/bpf/ubia-bench-fold';
const SOCKETS = Number(process.env.BENCH_SOCKETS ?? 4000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const FOLDS = 15;

/** SOCKETS open sockets: half TCP (both ends of loopback connections), half connected UDP. */
interface Held {
  touch(): Promise<void>;
  close(): Promise<void>;
}

async function holdSockets(n: number): Promise<Held> {
  const server = net.createServer((c) => c.on('data', () => {}));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const sink = dgram.createSocket('udp4');
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', r));
  sink.on('message', () => {});
  const sinkPort = sink.address().port;
  const tcp: net.Socket[] = [];
  for (let i = 0; i < n / 4; i++) {
    tcp.push(await new Promise<net.Socket>((r, j) => {
      const c = net.connect(port, '127.0.0.1', () => r(c));
      c.once('error', j);
    }));
  }
  const udp: dgram.Socket[] = [];
  for (let i = 0; i < n / 2; i++) {
    const u = dgram.createSocket('udp4');
    await new Promise<void>((r) => u.connect(sinkPort, '127.0.0.1', r));
    udp.push(u);
  }
  const byte = Buffer.from('x');
  return {
    // every socket moves a few bytes (its pending counts and TCP payload then fold)
    touch: async () => {
      await Promise.all([
        ...tcp.map((c) => new Promise<void>((r) => c.write(byte, () => r()))),
        ...udp.map((u) => new Promise<void>((r) => u.send(byte, () => r()))),
      ]);
      await new Promise((r) => setTimeout(r, 50)); // delivered
    },
    close: async () => {
      tcp.forEach((c) => c.destroy());
      udp.forEach((u) => u.close());
      sink.close();
      await new Promise((r) => server.close(r));
      await new Promise((r) => setTimeout(r, 200)); // released
    },
  };
}

/** Median time of FOLDS folds (ms), bpf_stats off: the statistics add ~40 ns to every
 *  program run, two runs per socket. */
async function timeFolds(meter: Meter, before?: () => Promise<void>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < FOLDS; i++) {
    await before?.();
    const t0 = process.hrtime.bigint();
    meter.fold();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

/** What the meter's programs did per fold, over FOLDS folds with bpf_stats on. */
async function foldPrograms(meter: Meter, ids: number[], before?: () => Promise<void>): Promise<ProgramTimes> {
  return withBpfStats(async () => {
    const sum: ProgramTimes = new Map();
    for (let i = 0; i < FOLDS; i++) {
      await before?.();
      const s0 = programTimes(ids);
      meter.fold();
      for (const [name, t] of timesSince(s0, programTimes(ids))) {
        const acc = sum.get(name) ?? { ns: 0, runs: 0 };
        sum.set(name, { ns: acc.ns + t.ns / FOLDS, runs: acc.runs + t.runs / FOLDS });
      }
    }
    return sum;
  });
}

async function main() {
  detachMeter(PIN_DIR);
  const meter = openMeter({ pinDir: PIN_DIR, foldOnRead: false });
  const ids = meterProgramIds(PIN_DIR);
  const route = meter.status().hooks.find((h) => h.name === 'fold')?.detail ?? '?';
  const perSocket: Record<'idle' | 'active', number[]> = { idle: [], active: [] };
  const foldMs: Record<'none' | 'idle' | 'active', number[]> = { none: [], idle: [], active: [] };
  // per fold program, per round (bpf_stats on): its extra runs and ns per held socket
  const progRuns = new Map<string, number[]>();
  const progNs = new Map<string, number[]>();
  const progNsPerRun = new Map<string, number[]>();
  const push = (m: Map<string, number[]>, k: string, v: number) => m.set(k, [...(m.get(k) ?? []), v]);
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const none = await timeFolds(meter);
      const noneProgs = await foldPrograms(meter, ids);
      const held = await holdSockets(SOCKETS);
      try {
        meter.fold(); // the first fold of a socket takes its baseline
        const idle = await timeFolds(meter);
        const active = await timeFolds(meter, held.touch);
        foldMs.none.push(none);
        foldMs.idle.push(idle);
        foldMs.active.push(active);
        perSocket.idle.push(((idle - none) * 1000) / SOCKETS);
        perSocket.active.push(((active - none) * 1000) / SOCKETS);
        const perHeld = (label: string, progs: ProgramTimes) => {
          for (const [name, t] of progs) {
            const base = noneProgs.get(name) ?? { ns: 0, runs: 0 };
            if (t.runs - base.runs <= 0) continue; // not a fold program
            push(progRuns, `${name}${label}`, (t.runs - base.runs) / SOCKETS);
            push(progNs, `${name}${label}`, (t.ns - base.ns) / SOCKETS);
            push(progNsPerRun, `${name}${label}`, (t.ns - base.ns) / (t.runs - base.runs));
          }
        };
        perHeld('', await foldPrograms(meter, ids));
        perHeld(' (active)', await foldPrograms(meter, ids, held.touch));
      } finally {
        await held.close();
      }
      process.stderr.write(`round ${r + 1}/${ROUNDS}: fold ${none.toFixed(2)} ms, with ${SOCKETS} idle sockets ${foldMs.idle.at(-1)!.toFixed(2)} ms, active ${foldMs.active.at(-1)!.toFixed(2)} ms\n`);
    }
  } finally {
    meter.close({ detach: true });
  }
  const us = (x: number) => `${x.toFixed(2)} µs`;
  const ms = (x: number) => `${x.toFixed(2)} ms`;
  const ns = (x: number) => `${x.toFixed(0)} ns`;
  console.log(route);
  console.log(`${ROUNDS} rounds, ${FOLDS} folds each, median (range over rounds):`);
  console.table({
    'fold, no extra sockets': { time: spread(foldMs.none, ms) },
    [`fold, ${SOCKETS} idle sockets held`]: { time: spread(foldMs.idle, ms) },
    [`fold, ${SOCKETS} sockets that moved bytes`]: { time: spread(foldMs.active, ms) },
    'per idle socket': { time: spread(perSocket.idle, us) },
    'per active socket': { time: spread(perSocket.active, us) },
  });
  const table: Record<string, Record<string, string>> = {};
  for (const [name, v] of progNs) {
    table[name] = {
      'runs per held socket': spread(progRuns.get(name)!, (x) => x.toFixed(2)),
      'program ns per held socket': spread(v, ns),
      'ns per extra run': spread(progNsPerRun.get(name)!, ns),
    };
  }
  console.table(table);
  console.log(JSON.stringify({ sockets: SOCKETS, rounds: ROUNDS, folds: FOLDS, foldMs, perSocketUs: perSocket, programNsPerSocket: Object.fromEntries(progNs), runsPerSocket: Object.fromEntries(progRuns) }));
}

await main();
