// npm run bench:diameter — Diameter accounting throughput against the real test peer
// (freeDiameter + app_acct + PostgreSQL on loopback, started here from the test harness),
// with the ledger outbox on (SQLite WAL, synchronous=NORMAL, as the agent opens it):
//   1. sustained ACR/ACA rate: 50,000 STARTs in polls of 1,000 users, until the last ACA
//   2. INTERIMs for 10,000 users: from the poll that makes them due to the last ACA
// Prints one JSON line with the figures. Needs root (PostgreSQL runs as postgres).
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createDiameterAccounting } from '../src/export/diameter/index.js';
import { diameterConfigSchema } from '../src/export/diameter/config.js';
import type { UserUsage } from '../src/export/types.js';
import * as harness from '../test/peers/freediameter/harness.js';
import { sleep } from '../test/support/wait.js';

const SUSTAINED_RECORDS = 50_000;
const INTERIM_USERS = 10_000;
const INTERIM_S = 300;

function users(n: number, firstUid: number): UserUsage[] {
  return Array.from({ length: n }, (_, k) => ({
    uid: firstUid + k,
    user: `bench${firstUid + k}`,
    rxBytes: 1000 + k,
    txBytes: 500 + k,
    rxPackets: 10,
    txPackets: 5,
    rxPayloadBytes: 0,
    txPayloadBytes: 0,
  }));
}

async function main(): Promise<void> {
  const pg = await harness.startPostgres();
  const fd = await harness.startFreeDiameter({ pg });
  const dir = mkdtempSync(join(tmpdir(), 'ubia-bench-diameter-'));
  const db = new Database(join(dir, 'ledger.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  const acct = createDiameterAccounting(
    diameterConfigSchema.parse({
      servers: [{ host: '127.0.0.1', port: fd.port }],
      origin_realm: 'test.local',
      destination_realm: 'test.local',
      interim_interval: INTERIM_S,
    }),
    { logger: pino({ level: 'warn' }, pino.destination(2)), db, hostName: 'bench' },
  );
  const drained = async (timeoutMs: number): Promise<number> => {
    const deadline = Date.now() + timeoutMs;
    while (acct.status().queued > 0) {
      if (Date.now() > deadline) throw new Error(`outbox not drained in ${timeoutMs} ms: ${JSON.stringify(acct.status())}`);
      await sleep(5);
    }
    return performance.now();
  };
  try {
    const openDeadline = Date.now() + 10_000;
    while (acct.status().state !== 'ok') {
      if (Date.now() > openDeadline) throw new Error(`peer not open: ${acct.status().detail}`);
      await sleep(20);
    }

    // 1. sustained rate: polls of 1,000 new users each, back to back (the sender runs
    //    between them, as it does between the agent's polls), until the last ACA
    let now = Date.now();
    const t0 = performance.now();
    let enqueuedMs = 0;
    for (let k = 0; k < SUSTAINED_RECORDS; k += 1000) {
      const e0 = performance.now();
      acct.usage({ startMs: now - 1000, endMs: now, users: users(1000, 100_000 + k) });
      enqueuedMs += performance.now() - e0;
      await new Promise((r) => setImmediate(r));
    }
    const t1 = await drained(120_000);
    const sustainedRate = SUSTAINED_RECORDS / ((t1 - t0) / 1000);

    console.log(`sustained: ${Math.round(sustainedRate)} ACR/s (${SUSTAINED_RECORDS} ACRs, ledger outbox on; of which writing them to the ledger ${Math.round(enqueuedMs)} ms)`);

    // 2. INTERIMs for 10,000 users: START them as if INTERIM_S - 15 s ago (the 1 s tick
    //    would write their INTERIMs in 15 s), wait for the STARTs' ACAs, then hand over a
    //    poll that makes every INTERIM due at once: timed from that call to the last ACA
    now = Date.now();
    const startedEnd = now - (INTERIM_S - 15) * 1000;
    const interimUsers = users(INTERIM_USERS, 500_000);
    acct.usage({ startMs: startedEnd - 1000, endMs: startedEnd, users: interimUsers });
    await drained(14_000);
    const dueEnd = startedEnd + INTERIM_S * 1000;
    const i0 = performance.now();
    acct.usage({ startMs: dueEnd - 1000, endMs: dueEnd, users: interimUsers });
    const interimWriteMs = performance.now() - i0;
    const i1 = await drained(60_000);
    const stored = Number(pg.sql('SELECT count(*) FROM incoming').trim());

    const result = {
      sustainedAcrPerSecond: Math.round(sustainedRate),
      sustainedRecords: SUSTAINED_RECORDS,
      sustainedEnqueueMs: Math.round(enqueuedMs),
      interimUsers: INTERIM_USERS,
      interimSendMs: Math.round(i1 - i0),
      interimWriteMs: Math.round(interimWriteMs),
      rowsInPostgres: stored,
      expectedRows: SUSTAINED_RECORDS + 2 * INTERIM_USERS,
    };
    console.log(`INTERIMs for ${INTERIM_USERS} users: ${result.interimSendMs} ms from the poll to the last ACA (writing them: ${result.interimWriteMs} ms)`);
    console.log(JSON.stringify(result));
  } finally {
    await acct.close().catch(() => undefined);
    db.close();
    await fd.close();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
