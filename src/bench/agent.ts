// `npm run bench:agent`: the agent's cost per poll with 10,000 active flows, 5,000
// users (both scopes) and 10,000 processes whose counters all move every poll — the
// worst case. Runs the real accounting + ledger (SQLite on disk) at a 1 s poll with a
// 10 s flush for DURATION seconds (argv[2], default 30) and reports CPU and RSS.
// The counters come from a synthetic meter: no host has 5,000 active users to measure.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FlowRecord, InterfaceCounters, MeterEvent, ProcessCounters, UserCounters } from '../kernel/types.js';
import { Accounting } from '../agent/accounting.js';
import type { MeterReader } from '../agent/meter.js';
import { createNameCache } from '../agent/names.js';
import { userName } from '../kernel/native.js';
import { Ledger } from '../ledger/ledger.js';

const USERS = 5000;
const PROCESSES = 10_000;
const FLOWS = 10_000;

/** CPU spent inside the synthetic meter: the real one reads maps in C++ instead. */
let meterCpuMs = 0;
function timed<A extends unknown[], R>(fn: (...a: A) => R): (...a: A) => R {
  return (...a) => {
    const t = process.cpuUsage();
    try {
      return fn(...a);
    } finally {
      meterCpuMs += cpuMsSince(t);
    }
  };
}

function syntheticMeter(): MeterReader {
  let tick = 0;
  const grow = (base: number) => base * tick;
  const counters = (i: number) => ({
    rxBytes: grow(1500 + i),
    txBytes: grow(700 + i),
    rxPackets: grow(2),
    txPackets: grow(1),
    rxPayloadBytes: grow(1400 + i),
    txPayloadBytes: grow(600 + i),
  });
  return {
    status: () => ({ kernelRelease: 'synthetic', mode: 'synthetic', hooks: [], pinDir: '', resumed: false }),
    readUsers: timed(() => {
      tick++;
      const out: UserCounters[] = [];
      for (let i = 0; i < USERS; i++) {
        out.push({ uid: 100_000 + i, scope: 'external', ...counters(i) });
        out.push({ uid: 100_000 + i, scope: 'loopback', ...counters(i) });
      }
      return out;
    }),
    readProcesses: timed(() =>
      Array.from({ length: PROCESSES }, (_, i): ProcessCounters => ({ uid: 100_000 + (i % USERS), pid: 10_000 + i, comm: `proc${i % 50}`, scope: 'external', ...counters(i) })),
    ),
    readFlows: timed(() => {
      const now = Date.now();
      return Array.from({ length: FLOWS }, (_, i): FlowRecord => ({
        cookie: BigInt(i + 1),
        family: 4,
        protocol: 6,
        localAddress: '198.18.0.1',
        localPort: 40_000 + (i % 20_000),
        remoteAddress: `198.19.${(i >> 8) & 255}.${i & 255}`,
        remotePort: 443,
        uid: 100_000 + (i % USERS),
        gid: 100,
        pid: 10_000 + i,
        comm: `proc${i % 50}`,
        cgroupId: 1n,
        scope: 'external',
        firstSeenMs: now - 60_000,
        lastSeenMs: now,
        ...counters(i),
      }));
    }),
    readInterfaces: (): InterfaceCounters[] =>
      ['lo', 'eth0'].map((name, ifindex) => {
        const c = { rxBytes: grow(10), txBytes: grow(10), rxPackets: tick, txPackets: tick };
        return { ifindex: ifindex + 1, name, total: c, attributed: c, unattributed: c };
      }),
    health: () => ({ overflows: { users: 0, processes: 0, flows: 0, interfaces: 0 }, eventsDropped: 0 }),
    onEvent: (_cb: (e: MeterEvent) => void) => undefined,
    forgetProcess: () => undefined,
    close: () => undefined,
  };
}

/** CPU time (user + system, all threads) since `from`, in ms: wall time would count
 *  whatever else the machine is running. */
function cpuMsSince(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 30);
  const dir = mkdtempSync(join(tmpdir(), 'ubia-bench-'));
  const ledger = new Ledger(join(dir, 'ledger.db'));
  const accounting = new Accounting(syntheticMeter(), ledger, { users: [], interfaces: [] }, createNameCache(userName, 300_000), {
    countLoopback: false,
    recentFlows: 1000,
    flowIntervalMs: 5000,
  });
  const pollMs: number[] = [];
  const flushMs: number[] = [];
  // warm-up: the first poll books every counter as new and fills the name cache
  accounting.poll(Date.now());
  accounting.persist('bench');
  meterCpuMs = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let rssMax = 0;
  for (let i = 1; i <= seconds; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const p0 = process.cpuUsage();
    accounting.poll(Date.now());
    pollMs.push(cpuMsSince(p0));
    if (i % 10 === 0) {
      const f0 = process.cpuUsage();
      accounting.persist('bench');
      flushMs.push(cpuMsSince(f0));
    }
    rssMax = Math.max(rssMax, process.memoryUsage().rss);
  }
  const cpu = process.cpuUsage(cpu0);
  const wallS = (performance.now() - t0) / 1000;
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const sorted = [...pollMs].sort((a, b) => a - b);
  const result = {
    users: USERS,
    processes: PROCESSES,
    flows: FLOWS,
    seconds: Math.round(wallS),
    cpuPercentOfOneCore: +((cpuMs / (wallS * 1000)) * 100).toFixed(2),
    /** the same without the synthetic meter's reads (the native meter's own cost is in bench:overhead) */
    agentCpuPercentOfOneCore: +(((cpuMs - meterCpuMs) / (wallS * 1000)) * 100).toFixed(2),
    pollCpuMsMedian: +sorted[Math.floor(sorted.length / 2)]!.toFixed(1),
    pollCpuMsMax: +sorted[sorted.length - 1]!.toFixed(1),
    flushCpuMsMean: +(flushMs.reduce((a, b) => a + b, 0) / Math.max(1, flushMs.length)).toFixed(1),
    rssMaxMiB: Math.round(rssMax / 2 ** 20),
    heapUsedMiB: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
    heapTotalMiB: Math.round(process.memoryUsage().heapTotal / 2 ** 20),
    ledgerBytes: ledger.sizeBytes(),
  };
  ledger.close();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  const ok = result.agentCpuPercentOfOneCore < 1 && result.rssMaxMiB < 100;
  process.stdout.write(ok ? 'within target (< 1% of a core, < 100 MiB RSS)\n' : 'OVER TARGET (< 1% of a core, < 100 MiB RSS)\n');
}

await main();
