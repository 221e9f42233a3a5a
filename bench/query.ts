// `npm run bench:query`: the flow store's budget (issue 13). Ingest: flow records as the
// recorder hands them over, in batches of one flush (10 s at 20,000 records/s), CPU time
// per record → share of one core at 20,000 records/s (budget < 5 %). Query: 10 million
// stored records grouped by user and remote port through the query language (budget
// < 2 s), plus a filtered and a network-grouped query. Runs from the sources (scripts/ts-hooks.mjs).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataChunks } from '../src/history/chunks.js';
import { FlowStore, type StoredFlow } from '../src/history/store.js';
import { compileQuery } from '../src/history/query.js';

const TOTAL = Number(process.env.BENCH_FLOWS ?? 10_000_000);
const BATCH = 200_000; // one 10 s flush at 20,000 records/s
const RATE = 20_000;
const USERS = 200;
const COMMS = ['sshd', 'rsync', 'curl', 'python3', 'git', 'firefox', 'node', 'ssh', 'apt', 'wget'];
const PORTS = [22, 53, 80, 443, 993, 8080, 3128, 873];

/** A login server's mix: 200 users, a few programs, remote hosts over a /12, many ports. */
function batch(start: number, n: number, t0: number): StoredFlow[] {
  const out: StoredFlow[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const k = start + i;
    const uid = 1000 + ((k * 7) % USERS);
    const r = (k * 2654435761) >>> 0;
    const endMs = t0 + Math.floor(k / 120); // ~10 M records over a day
    out[i] = {
      startMs: endMs - (r % 300_000), endMs, uid, user: `user${uid}`, pid: 1000 + (r % 30_000), comm: COMMS[r % COMMS.length]!,
      exe: `/usr/bin/${COMMS[r % COMMS.length]}`, unit: `job_${r % 50}/step_0`, protocol: r % 5 === 0 ? 17 : 6, family: 4,
      localAddress: '198.18.0.1', localPort: 32768 + (r % 28_000),
      remoteAddress: `198.${18 + ((r >>> 20) & 15)}.${(r >>> 8) & 255}.${r & 255}`, remotePort: r % 3 === 0 ? 32768 + (r % 1000) : PORTS[r % PORTS.length]!,
      rxBytes: r % 1_000_000, txBytes: r % 100_000, rxPackets: r % 1000, txPackets: r % 300, rxPayloadBytes: r % 900_000, txPayloadBytes: r % 90_000,
    };
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'ubia-bench-query-'));
const store = await FlowStore.open(join(dir, 'flows', 'flows.duckdb'));
try {
  const t0 = Date.now() - 86_400_000;
  let cpuUs = 0;
  let convertUs = 0;
  const cpu = () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  const wall = Date.now();
  for (let at = 0; at < TOTAL; at += BATCH) {
    const records = batch(at, Math.min(BATCH, TOTAL - at), t0);
    // the JavaScript half alone (records → column chunks), not appended
    const ids = { program: new Int32Array(records.length).fill(1), unit: new Int32Array(records.length).fill(1) };
    const c0 = cpu();
    dataChunks(records, ids);
    const c1 = cpu();
    await store.append(records);
    cpuUs += cpu() - c1;
    convertUs += c1 - c0;
  }
  const perRecordUs = cpuUs / TOTAL;
  const share = (perRecordUs * RATE) / 1e6;
  console.log(`ingest: ${TOTAL.toLocaleString('en')} records in ${((Date.now() - wall) / 1000).toFixed(1)} s wall; ${perRecordUs.toFixed(2)} µs CPU per record = ${(share * 100).toFixed(1)} % of a core at ${RATE.toLocaleString('en')} records/s (budget < 5 %): ${share < 0.05 ? 'ok' : 'OVER'}`);
  console.log(`  of which records → column chunks (JavaScript, timed apart): ${(convertUs / TOTAL).toFixed(2)} µs; the rest is DuckDB's appender, compression and writes`);
  console.log(`store: ${(store.sizeBytes() / 2 ** 20).toFixed(0)} MiB, ${(store.sizeBytes() / TOTAL).toFixed(1)} bytes per record`);

  const queries = [
    { what: 'group by user,remote_port', q: { groupBy: 'user,remote_port', order: '-bytes' }, budgetMs: 2000 },
    { what: "where 'proto udp and port 53 and not user user1000' group by user,remote/24 having 'bytes > 10M'", q: { where: 'proto udp and port 53 and not user user1000', groupBy: 'user,remote/24', having: 'bytes > 10M', order: '-bytes' }, budgetMs: 2000 },
    { what: "where 'comm rsync and dst net 198.20.0.0/15' group by user", q: { where: 'comm rsync and dst net 198.20.0.0/15', groupBy: 'user' }, budgetMs: 2000 },
  ];
  for (const { what, q, budgetMs } of queries) {
    const compiled = compileQuery({ fromMs: 0, toMs: Date.now() + 1, limit: 20, ...q });
    const times: number[] = [];
    let rows = 0;
    for (let run = 0; run < 3; run++) {
      const t = performance.now();
      rows = (await store.query(compiled)).length;
      times.push(performance.now() - t);
    }
    const best = Math.min(...times);
    console.log(`query over ${TOTAL.toLocaleString('en')} records, ${what}: best of 3 ${best.toFixed(0)} ms (first ${times[0]!.toFixed(0)} ms), ${rows} rows (budget < ${budgetMs} ms): ${best < budgetMs ? 'ok' : 'OVER'}`);
  }
} finally {
  store.close();
  rmSync(dir, { recursive: true, force: true });
}
