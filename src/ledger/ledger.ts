// The durable usage ledger (SQLite, WAL). Per-user usage lives in time buckets (minute,
// rolled up to hour and day past their retention) together with a checkpoint: the last
// kernel counter values that produced it (opaque here, see agent/checkpoint.ts). Both are
// written in ONE transaction, so after a crash the next delta (current − checkpointed)
// covers exactly what was not yet written: no byte is lost or counted twice. Deltas wait
// in memory between flushes and are merged into reads. A minute still open is written
// as one blob (in meta, same transaction) rather than as thousands of upserts at every
// flush; it becomes usage rows once, when a flush finds it complete. Lifetime totals per
// (uid, scope) only ever grow: days deleted past their retention are added to `retired`
// first, so counters derived from them (the Prometheus endpoint) never go back.
// Beside the per-user buckets, the same traffic per (user, workload) — the cgroup path of
// the socket's owner (systemd unit, Slurm job, container; core/workload.ts names it at
// read time) — in buckets of the same resolutions and retention, written in the same
// transaction: a user's workload rows of a bucket sum exactly to the user's row.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Scope, TrafficCounters } from '../kernel/types.js';
import { addInto, getCounters, putCounters, userKey, zeroCounters, type UsageTotal } from '../core/counters.js';
import { filesSize } from './size.js';
export { UNATTRIBUTED_UID, type UsageTotal } from '../core/counters.js';

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;


export interface Retention {
  minuteMs: number;
  hourMs: number;
  dayMs: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage (
  resolution_ms INTEGER NOT NULL, bucket_ms INTEGER NOT NULL, uid INTEGER NOT NULL, scope TEXT NOT NULL,
  rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL,
  rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL,
  rx_payload_bytes INTEGER NOT NULL, tx_payload_bytes INTEGER NOT NULL,
  PRIMARY KEY (resolution_ms, bucket_ms, uid, scope)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unit_usage (
  resolution_ms INTEGER NOT NULL, bucket_ms INTEGER NOT NULL, uid INTEGER NOT NULL, scope TEXT NOT NULL, cgroup TEXT NOT NULL,
  rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL,
  rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL,
  rx_payload_bytes INTEGER NOT NULL, tx_payload_bytes INTEGER NOT NULL,
  PRIMARY KEY (resolution_ms, bucket_ms, uid, scope, cgroup)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retired (
  uid INTEGER NOT NULL, scope TEXT NOT NULL,
  rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL,
  rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL,
  rx_payload_bytes INTEGER NOT NULL, tx_payload_bytes INTEGER NOT NULL,
  PRIMARY KEY (uid, scope)
) WITHOUT ROWID;
`;

const COLS = 'rx_bytes, tx_bytes, rx_packets, tx_packets, rx_payload_bytes, tx_payload_bytes';
const SUMS = `SUM(rx_bytes) AS rx_bytes, SUM(tx_bytes) AS tx_bytes, SUM(rx_packets) AS rx_packets,
  SUM(tx_packets) AS tx_packets, SUM(rx_payload_bytes) AS rx_payload_bytes, SUM(tx_payload_bytes) AS tx_payload_bytes`;
const ADD_ON_CONFLICT = `ON CONFLICT DO UPDATE SET
  rx_bytes = rx_bytes + excluded.rx_bytes, tx_bytes = tx_bytes + excluded.tx_bytes,
  rx_packets = rx_packets + excluded.rx_packets, tx_packets = tx_packets + excluded.tx_packets,
  rx_payload_bytes = rx_payload_bytes + excluded.rx_payload_bytes,
  tx_payload_bytes = tx_payload_bytes + excluded.tx_payload_bytes`;

interface CounterRow {
  rx_bytes: number;
  tx_bytes: number;
  rx_packets: number;
  tx_packets: number;
  rx_payload_bytes: number;
  tx_payload_bytes: number;
}

const fromRow = (r: CounterRow): TrafficCounters => ({
  rxBytes: r.rx_bytes,
  txBytes: r.tx_bytes,
  rxPackets: r.rx_packets,
  txPackets: r.tx_packets,
  rxPayloadBytes: r.rx_payload_bytes,
  txPayloadBytes: r.tx_payload_bytes,
});

/** usage rows per INSERT in a flush: one statement per row costs ~35% more CPU (binding
 *  and stepping 5,000 statements instead of 50) */
const ROWS_PER_INSERT = 100;
/** parameters of one usage row: resolution, bucket, uid, scope and the six counters */
const USAGE_PARAMS = 10;
const insertUsage = (rows: number) =>
  `INSERT INTO usage (resolution_ms, bucket_ms, uid, scope, ${COLS}) VALUES ${Array(rows).fill(`(${Array(USAGE_PARAMS).fill('?').join(', ')})`).join(', ')} ${ADD_ON_CONFLICT}`;
const insertUnitUsage = `INSERT INTO unit_usage (resolution_ms, bucket_ms, uid, scope, cgroup, ${COLS}) VALUES (${Array(USAGE_PARAMS + 1).fill('?').join(', ')}) ${ADD_ON_CONFLICT}`;

interface Pending extends UsageTotal {
  bucketMs: number;
}

/** One user's usage in one workload (its owner's cgroup path; "" when unknown). */
export interface UnitUsageTotal extends UsageTotal {
  cgroupPath: string;
}

interface PendingUnit extends UnitUsageTotal {
  bucketMs: number;
}

const RESOLUTIONS = [MINUTE_MS, HOUR_MS, DAY_MS];

/** Bucket starts bounding each period at resolution `res`: every bucket overlapping
 *  [fromMs, toMs) lies in [first, last); an edge moves back half a bucket so that a bucket
 *  falls in the period holding its middle. */
function bucketBounds(fromMs: number, toMs: number, edges: readonly number[], res: number): number[] {
  return [fromMs - res + 1, ...edges.map((e) => e - res / 2), toMs];
}

/** Open minutes' usage as stored: per (bucket, uid, scope) 9 little-endian float64:
 *  bucket, uid, scope (1 = loopback), then the six counters. */
const OPEN_FIELDS = 9;

function encodeOpen(rows: Pending[]): Buffer {
  const out = Buffer.alloc(rows.length * OPEN_FIELDS * 8);
  const f = new Float64Array(out.buffer, out.byteOffset, rows.length * OPEN_FIELDS);
  let o = 0;
  for (const p of rows) {
    f[o] = p.bucketMs;
    f[o + 1] = p.uid;
    f[o + 2] = p.scope === 'loopback' ? 1 : 0;
    o = putCounters(f, o + 3, p);
  }
  return out;
}

function decodeOpen(data: Buffer): Pending[] {
  const rows: Pending[] = [];
  for (let o = 0; o + OPEN_FIELDS * 8 <= data.length; o += OPEN_FIELDS * 8) {
    const v = (field: number) => data.readDoubleLE(o + field * 8);
    rows.push({ bucketMs: v(0), uid: v(1), scope: v(2) === 1 ? 'loopback' : 'external', ...getCounters(data, o + 24) });
  }
  return rows;
}

export class Ledger {
  readonly db: Database.Database;
  /** minute bucket → (uid, scope) → usage not yet written */
  private pending = new Map<number, Map<number, Pending>>();
  /** minute bucket → (uid, scope, cgroup path) → workload usage not yet written */
  private pendingUnits = new Map<number, Map<string, PendingUnit>>();
  private lastBucket: { bucketMs: number; bucket: Map<number, Pending> } | undefined;
  /** (uid, scope) → everything ever booked: stored rows, retired days and pending usage */
  private lifetime = new Map<number, UsageTotal>();
  private readonly stmt;

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // FULL: a flush that returned is on disk even if the machine loses power right after
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.stmt = {
      addUsage: this.db.prepare(insertUsage(1)),
      addUsageBatch: this.db.prepare(insertUsage(ROWS_PER_INSERT)),
      setMeta: this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      getMeta: this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?'),
      getBlob: this.db.prepare<[string], { value: Buffer }>('SELECT value FROM meta WHERE key = ?'),
      addUnitUsage: this.db.prepare(insertUnitUsage),
      unitTotals: this.db.prepare<[number, number, number, number, number], CounterRow & { uid: number; scope: Scope; cgroup: string }>(
        `SELECT uid, scope, cgroup, ${SUMS} FROM unit_usage WHERE resolution_ms = ? AND bucket_ms > ? AND bucket_ms < ? AND (? OR uid = ?)
         GROUP BY uid, scope, cgroup`,
      ),
      bucketSpan: this.db.prepare<[number, number, number], { first: number | null; last: number | null }>(
        'SELECT MIN(bucket_ms) AS first, MAX(bucket_ms) AS last FROM usage WHERE resolution_ms = ? AND bucket_ms > ? AND bucket_ms < ?',
      ),
      // one row per period (its bucket bounds as JSON pairs) and (uid, scope): a range
      // scan of the primary key per period
      periodTotals: this.db.prepare<[string, number, number | null, number | null], CounterRow & { period: number; uid: number; scope: Scope }>(
        `SELECT p.key AS period, uid, scope, ${SUMS}
         FROM json_each(?) p JOIN usage u ON u.resolution_ms = ?
           AND u.bucket_ms >= json_extract(p.value, '$[0]') AND u.bucket_ms < json_extract(p.value, '$[1]')
         WHERE ? IS NULL OR uid = ? GROUP BY p.key, uid, scope`,
      ),
    };
    const stored = this.db
      .prepare<[], CounterRow & { uid: number; scope: Scope }>(
        `SELECT uid, scope, ${SUMS} FROM (SELECT uid, scope, ${COLS} FROM usage UNION ALL SELECT uid, scope, ${COLS} FROM retired)
         GROUP BY uid, scope`,
      )
      .all();
    for (const r of stored) this.lifetime.set(userKey(r.uid, r.scope), { uid: r.uid, scope: r.scope, ...fromRow(r) });
    // the open minutes are booked again through add(), which counts them into `lifetime`
    const open = this.stmt.getBlob.get('open_minutes')?.value;
    if (open) for (const p of decodeOpen(open)) this.add(p.bucketMs, p.uid, p.scope, p);
    const openUnits = this.stmt.getMeta.get('open_unit_minutes')?.value;
    if (openUnits) for (const p of JSON.parse(openUnits) as PendingUnit[]) this.addUnit(p.bucketMs, p.uid, p.scope, p.cgroupPath, p);
  }

  /**
   * The checkpoint written by the last flush of this boot. A different boot id means the
   * kernel maps started again from zero: the checkpoint is dropped, every counter is new.
   */
  loadCheckpoint(bootId: string): { checkpoint: Buffer | undefined; rebooted: boolean } {
    const stored = this.stmt.getMeta.get('boot_id')?.value;
    if (stored !== undefined && stored !== bootId) return { checkpoint: undefined, rebooted: true };
    return { checkpoint: this.stmt.getBlob.get('checkpoint')?.value, rebooted: false };
  }

  /** Books a delta into its minute bucket; durable at the next `flush`. */
  add(atMs: number, uid: number, scope: Scope, delta: TrafficCounters): void {
    const bucketMs = atMs - (atMs % MINUTE_MS);
    // a poll books thousands of deltas at one time: look its bucket up once
    if (this.lastBucket?.bucketMs !== bucketMs) {
      let bucket = this.pending.get(bucketMs);
      if (!bucket) {
        bucket = new Map();
        this.pending.set(bucketMs, bucket);
      }
      this.lastBucket = { bucketMs, bucket };
    }
    const bucket = this.lastBucket.bucket;
    const key = userKey(uid, scope);
    let p = bucket.get(key);
    if (!p) {
      p = { bucketMs, uid, scope, ...zeroCounters() };
      bucket.set(key, p);
    }
    addInto(p, delta);
    let life = this.lifetime.get(key);
    if (!life) {
      life = { uid, scope, ...zeroCounters() };
      this.lifetime.set(key, life);
    }
    addInto(life, delta);
  }

  /** Books a user's delta in one workload (its cgroup path) into its minute bucket;
   *  the agent books each user's delta over its workloads in full, beside `add`. */
  addUnit(atMs: number, uid: number, scope: Scope, cgroupPath: string, delta: TrafficCounters): void {
    const bucketMs = atMs - (atMs % MINUTE_MS);
    let bucket = this.pendingUnits.get(bucketMs);
    if (!bucket) {
      bucket = new Map();
      this.pendingUnits.set(bucketMs, bucket);
    }
    const key = `${userKey(uid, scope)} ${cgroupPath}`;
    let p = bucket.get(key);
    if (!p) {
      p = { bucketMs, uid, scope, cgroupPath, ...zeroCounters() };
      bucket.set(key, p);
    }
    addInto(p, delta);
  }

  /** Everything booked per (uid, scope) since the ledger was created, pending included.
   *  Never decreases (retention moves deleted days into `retired`), also across restarts
   *  of the agent, as long as the ledger file is kept. Live objects: read, do not keep. */
  lifetimeTotals(): Iterable<Readonly<UsageTotal>> {
    return this.lifetime.values();
  }

  /** Writes pending usage and the checkpoint behind it in one transaction: complete
   *  minutes as usage rows, open ones (at `nowMs`) as a blob they are read back from.
   *  `alongside` runs in the same transaction: state of others that must move with the
   *  checkpoint (a crash can then never leave one saved without the other). On failure
   *  (its own included) nothing is written and the pending usage is kept for the next try. */
  flush(bootId: string, checkpoint: Buffer, nowMs = Date.now(), alongside?: () => void): void {
    const complete: number[] = [];
    const params: (number | string)[] = [];
    const open: Pending[] = [];
    for (const [bucketMs, bucket] of this.pending) {
      if (bucketMs + MINUTE_MS > nowMs) {
        for (const p of bucket.values()) open.push(p);
        continue;
      }
      complete.push(bucketMs);
      for (const p of bucket.values()) {
        params.push(MINUTE_MS, p.bucketMs, p.uid, p.scope, p.rxBytes, p.txBytes, p.rxPackets, p.txPackets, p.rxPayloadBytes, p.txPayloadBytes);
      }
    }
    const completeUnits: number[] = [];
    const unitRows: PendingUnit[] = [];
    const openUnits: PendingUnit[] = [];
    for (const [bucketMs, bucket] of this.pendingUnits) {
      const open = bucketMs + MINUTE_MS > nowMs;
      if (!open) completeUnits.push(bucketMs);
      for (const p of bucket.values()) (open ? openUnits : unitRows).push(p);
    }
    const batch = ROWS_PER_INSERT * USAGE_PARAMS;
    this.db.transaction(() => {
      for (const p of unitRows) {
        this.stmt.addUnitUsage.run(MINUTE_MS, p.bucketMs, p.uid, p.scope, p.cgroupPath, p.rxBytes, p.txBytes, p.rxPackets, p.txPackets, p.rxPayloadBytes, p.txPayloadBytes);
      }
      this.stmt.setMeta.run('open_unit_minutes', JSON.stringify(openUnits));
      let at = 0;
      for (; at + batch <= params.length; at += batch) this.stmt.addUsageBatch.run(params.slice(at, at + batch));
      for (; at < params.length; at += USAGE_PARAMS) this.stmt.addUsage.run(params.slice(at, at + USAGE_PARAMS));
      this.stmt.setMeta.run('open_minutes', encodeOpen(open));
      this.stmt.setMeta.run('checkpoint', checkpoint);
      this.stmt.setMeta.run('boot_id', bootId);
      alongside?.();
    })();
    for (const bucketMs of complete) this.pending.delete(bucketMs);
    for (const bucketMs of completeUnits) this.pendingUnits.delete(bucketMs);
    if (this.lastBucket && complete.includes(this.lastBucket.bucketMs)) this.lastBucket = undefined;
  }

  /** Usage per (uid, scope) of every bucket overlapping [fromMs, toMs), pending included;
   *  of `onlyUid` alone when given (what a non-admin may see: no work for the others). */
  totals(fromMs: number, toMs: number, onlyUid?: number): UsageTotal[] {
    return this.periodTotals(fromMs, toMs, [], onlyUid);
  }

  /**
   * `totals` cut into periods at `edges` (increasing, within (fromMs, toMs)): the same
   * buckets, each counted once, in the period that holds its middle — a minute bucket in
   * the period it lies in (edges are whole minutes), an hour or day rolled up from older
   * data in the period holding most of it. Row `period` i is [edges[i-1], edges[i]).
   */
  periodTotals(fromMs: number, toMs: number, edges: readonly number[], onlyUid?: number): (UsageTotal & { period: number })[] {
    const out = new Map<string, UsageTotal & { period: number }>();
    const into = (period: number, uid: number, scope: Scope, c: TrafficCounters) => {
      const key = `${period}:${uid}:${scope}`;
      let t = out.get(key);
      if (!t) {
        t = { period, uid, scope, ...zeroCounters() };
        out.set(key, t);
      }
      addInto(t, c);
    };
    const only = onlyUid ?? null;
    for (const res of RESOLUTIONS) {
      const bounds = bucketBounds(fromMs, toMs, edges, res);
      const pairs = JSON.stringify(bounds.slice(1).map((hi, i) => [bounds[i], hi]));
      for (const r of this.stmt.periodTotals.all(pairs, res, only, only)) into(r.period, r.uid, r.scope, fromRow(r));
    }
    const minuteBounds = bucketBounds(fromMs, toMs, edges, MINUTE_MS);
    for (const [bucketMs, bucket] of this.pending) {
      const period = minuteBounds.findIndex((b) => bucketMs < b) - 1; // < 0: outside the range
      if (period < 0) continue;
      for (const p of bucket.values()) if (onlyUid === undefined || p.uid === onlyUid) into(period, p.uid, p.scope, p);
    }
    return [...out.values()];
  }

  /**
   * The range a sum over [fromMs, toMs) counts, bucket-aligned: [fromMs, toMs) widened to
   * whole minutes (the finest buckets: any of them overlapping the range is summed whole),
   * and further to the edges of any hour or day bucket (older data, rolled up) overlapping
   * it. Every byte `totals`, `periodTotals` or `unitTotals` returns for the range was booked
   * in it. The same for every user and the workload buckets (they roll up together).
   */
  countedRange(fromMs: number, toMs: number): { fromMs: number; toMs: number } {
    let from = Math.floor(fromMs / MINUTE_MS) * MINUTE_MS;
    let to = Math.ceil(toMs / MINUTE_MS) * MINUTE_MS;
    for (const res of [HOUR_MS, DAY_MS]) {
      const { first, last } = this.stmt.bucketSpan.get(res, fromMs - res, toMs)!;
      if (first !== null) from = Math.min(from, first);
      if (last !== null) to = Math.max(to, last + res);
    }
    return { fromMs: from, toMs: to };
  }

  /** Usage per (uid, scope, workload cgroup path) of every bucket overlapping
   *  [fromMs, toMs), pending included; of `onlyUid` alone when given. */
  unitTotals(fromMs: number, toMs: number, onlyUid?: number): UnitUsageTotal[] {
    const out = new Map<string, UnitUsageTotal>();
    const into = (uid: number, scope: Scope, cgroupPath: string, c: TrafficCounters) => {
      const key = `${userKey(uid, scope)} ${cgroupPath}`;
      let t = out.get(key);
      if (!t) {
        t = { uid, scope, cgroupPath, ...zeroCounters() };
        out.set(key, t);
      }
      addInto(t, c);
    };
    const all = onlyUid === undefined ? 1 : 0;
    for (const res of RESOLUTIONS) {
      for (const r of this.stmt.unitTotals.all(res, fromMs - res, toMs, all, onlyUid ?? -1)) into(r.uid, r.scope, r.cgroup, fromRow(r));
    }
    for (const [bucketMs, bucket] of this.pendingUnits) {
      if (bucketMs + MINUTE_MS <= fromMs || bucketMs >= toMs) continue;
      for (const p of bucket.values()) if (onlyUid === undefined || p.uid === onlyUid) into(p.uid, p.scope, p.cgroupPath, p);
    }
    return [...out.values()];
  }

  /**
   * Moves buckets older than their retention into the next coarser resolution (minute →
   * hour → day) and deletes days past theirs. Only whole target buckets move, so a bucket
   * never exists at two resolutions for the same time.
   */
  rollUp(nowMs: number, retention: Retention): { minutes: number; hours: number; days: number } {
    // the per-user and the per-workload buckets move together: same cut-offs
    const moveTable = (table: string, keys: string, fromRes: number, toRes: number, cutoff: number): number => {
      const moved = this.db
        .prepare(
          `INSERT INTO ${table} (resolution_ms, bucket_ms, ${keys}, ${COLS})
           SELECT ?, bucket_ms - (bucket_ms % ?), ${keys}, ${SUMS} FROM ${table} WHERE resolution_ms = ? AND bucket_ms < ? GROUP BY 2, ${keys} ${ADD_ON_CONFLICT}`,
        )
        .run(toRes, toRes, fromRes, cutoff);
      this.db.prepare(`DELETE FROM ${table} WHERE resolution_ms = ? AND bucket_ms < ?`).run(fromRes, cutoff);
      return moved.changes;
    };
    const move = (fromRes: number, toRes: number, keepMs: number): number => {
      const cutoff = Math.floor((nowMs - keepMs) / toRes) * toRes;
      moveTable('unit_usage', 'uid, scope, cgroup', fromRes, toRes, cutoff);
      return moveTable('usage', 'uid, scope', fromRes, toRes, cutoff);
    };
    const retire = (cutoff: number): number => {
      this.db
        .prepare(
          `INSERT INTO retired (uid, scope, ${COLS})
           SELECT uid, scope, ${SUMS} FROM usage WHERE resolution_ms = ? AND bucket_ms < ? GROUP BY uid, scope ${ADD_ON_CONFLICT}`,
        )
        .run(DAY_MS, cutoff);
      this.db.prepare('DELETE FROM unit_usage WHERE resolution_ms = ? AND bucket_ms < ?').run(DAY_MS, cutoff);
      return this.db.prepare('DELETE FROM usage WHERE resolution_ms = ? AND bucket_ms < ?').run(DAY_MS, cutoff).changes;
    };
    return this.db.transaction(() => ({
      minutes: move(MINUTE_MS, HOUR_MS, retention.minuteMs),
      hours: move(HOUR_MS, DAY_MS, retention.hourMs),
      days: retire(nowMs - retention.dayMs),
    }))();
  }

  /** Bytes on disk: the database and its write-ahead log. */
  sizeBytes(): number {
    return filesSize(this.path, `${this.path}-wal`);
  }

  close(): void {
    this.db.close();
  }
}
