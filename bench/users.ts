// npm run bench:users — reading 65,536 users' totals (issue 11: < 10 ms), as the agent's
// poll reads them every second: the columns (typed arrays) of meter.readUserColumns().
// Fills the pinned user slots to USERS through bpftool's batch mode (as the kernel would:
// slot, then the meta map's count of used slots), then times the read alone (the meter
// opened with foldOnRead: false) and, interleaved with it, a fold followed by the read
// (what a poll costs on this host: the fold grows with the host's open sockets, see
// bench:fold) and the read as JS row objects. Root; run it while no system test runs
// (flock /tmp/ubia-systest.lock).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openMeter, detachMeter, type Meter } from '../src/kernel/index.js';
import { median, spread } from './figures.js';

const PIN_DIR = '/sys/fs/bpf/ubia-bench-users';
const USERS = Number(process.env.BENCH_USERS ?? 65_536);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
const READS = 20;

/** Fills user slots up to n through bpftool (batch files of 2,000 updates). */
function fillSlots(n: number): void {
  const dir = mkdtempSync(join(tmpdir(), 'ubia-bench-'));
  try {
    const hex = (v: number, bytes: number) => Array.from({ length: bytes }, (_, i) => (i < 4 ? (v >>> (8 * i)) & 0xff : 0).toString(16).padStart(2, '0')).join(' ');
    const counters = Array.from({ length: 6 }, () => hex(1000, 8)).join(' ');
    // traffic meanwhile takes slots too: stop live counting from taking ours by reading
    // the count first and writing it last (a race here only costs the benchmark a user)
    const meta = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'lookup', 'pinned', `${PIN_DIR}/maps/meta`, 'key', '0', '0', '0', '0'], { encoding: 'utf8' })) as {
      formatted?: { value: { abi_version: number; user_slots_used: number; fold_gen: number; precise: number } };
    };
    const { abi_version: abi, user_slots_used: used, fold_gen: gen, precise } = meta.formatted!.value;
    const lines: string[] = [];
    for (let slot = used; slot < n; slot++) {
      const key = `${hex(100_000 + slot, 4)} 00 00 00 00`; // uid, scope external
      lines.push(`map update pinned ${PIN_DIR}/maps/user_slots key hex ${hex(slot, 4)} value hex ${key} ${hex(1, 4)} 00 00 00 00 ${counters}`);
    }
    lines.push(`map update pinned ${PIN_DIR}/maps/meta key hex 00 00 00 00 value hex ${hex(abi, 4)} ${hex(n, 4)} ${hex(gen, 4)} ${hex(precise, 4)}`);
    for (let i = 0; i < lines.length; i += 2000) {
      writeFileSync(join(dir, 'batch'), lines.slice(i, i + 2000).join('\n') + '\n');
      execFileSync('bpftool', ['batch', 'file', join(dir, 'batch')], { stdio: 'ignore' });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Median of READS timings of `read` (ms); checks it saw every user. */
function timed(read: () => number): number {
  const times: number[] = [];
  for (let i = 0; i < READS; i++) {
    const t0 = process.hrtime.bigint();
    const users = read();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (users < USERS) throw new Error(`read ${users} users, ${USERS} expected`);
  }
  return median(times);
}

function main() {
  detachMeter(PIN_DIR);
  const meter: Meter = openMeter({ pinDir: PIN_DIR, foldOnRead: false });
  try {
    fillSlots(USERS);
    const columns: number[] = [];
    const foldThenColumns: number[] = [];
    const rows: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      columns.push(timed(() => meter.readUserColumns().uid.length));
      foldThenColumns.push(timed(() => (meter.fold(), meter.readUserColumns().uid.length)));
      rows.push(timed(() => meter.readUsers().length));
    }
    const ms = (x: number) => `${x.toFixed(2)} ms`;
    console.log(`${USERS} users, ${ROUNDS} rounds of ${READS} reads each, median of the rounds' medians (range):`);
    console.table({
      'columns (what the agent reads)': { time: spread(columns, ms) },
      'fold, then columns (a poll on this host)': { time: spread(foldThenColumns, ms) },
      'row objects': { time: spread(rows, ms) },
    });
    console.log(JSON.stringify({ users: USERS, rounds: ROUNDS, reads: READS, columnsMs: columns, foldThenColumnsMs: foldThenColumns, rowsMs: rows }));
  } finally {
    meter.close({ detach: true });
  }
}

main();
