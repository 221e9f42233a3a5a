// The flow store: every flow record the agent makes (a flow's counts over one period:
// up to an active timeout, or to its end) in a DuckDB file beside the ledger. DuckDB,
// not SQLite, on measurements (docs/architecture.md "Flow store"): a group-by over 10
// million records takes ~0.5 s in DuckDB's column store and ~6 s in SQLite's row b-tree,
// at the same ingest cost. Retention by age and by size; the files are root's only.
import { DuckDBInstance, DOUBLE, INTEGER, UHUGEINT, VARCHAR, type DuckDBConnection, type DuckDBType, type DuckDBValue } from '@duckdb/node-api';
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { TrafficCounters } from '../kernel/types.js';
import { filesSize } from '../ledger/size.js';
import { COLUMNS, dataChunks, type RecordIds } from './chunks.js';
import type { CompiledQuery, Param } from './query.js';

/** One flow over one period, as stored. Counts are deltas over [startMs, endMs]. */
export interface StoredFlow extends TrafficCounters {
  startMs: number;
  endMs: number;
  uid: number;
  user: string;
  pid: number;
  comm: string;
  /** executable path, when the process could still be asked */
  exe: string | null;
  /** the owner's workload (systemd unit, Slurm job or step, container: docs/units.md) */
  unit: string;
  protocol: number;
  family: 4 | 6;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

// Queries read \`flow_records\`: the rows with their user's (latest) name and program.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS flows (${COLUMNS.map(({ name, type, compression }) => `${name} ${type.toString()}${compression ? ` USING COMPRESSION ${compression}` : ''}`).join(', ')});
CREATE TABLE IF NOT EXISTS users (uid INTEGER PRIMARY KEY, name VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS programs (program INTEGER PRIMARY KEY, comm VARCHAR NOT NULL, exe VARCHAR);
CREATE TABLE IF NOT EXISTS units (unit INTEGER PRIMARY KEY, name VARCHAR NOT NULL);
ALTER TABLE flows ADD COLUMN IF NOT EXISTS unit INTEGER;
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE OR REPLACE VIEW flow_records AS
  SELECT f.* EXCLUDE (unit), u.name AS "user", p.comm, p.exe, w.name AS unit
  FROM flows f LEFT JOIN users u USING (uid) LEFT JOIN programs p USING (program) LEFT JOIN units w ON w.unit = f.unit;
`;

export interface StoreRetention {
  maxAgeMs: number;
  maxBytes: number;
}

export class FlowStore {
  private constructor(
    readonly path: string,
    private readonly instance: DuckDBInstance,
    private readonly con: DuckDBConnection,
    /** uid → name as stored */
    private readonly users: Map<number, string>,
    /** comm → exe ('' for none) → program id: two look-ups, no key string built per record */
    private readonly programs: Map<string, Map<string, number>>,
    private programCount: number,
    /** workload name → unit id */
    private readonly units: Map<string, number>,
  ) {}

  /** Opens (creating) the store; its directory and files are readable by root only. */
  static async open(path: string): Promise<FlowStore> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    chmodSync(dirname(path), 0o700);
    // one thread per core is DuckDB's default; two keep the agent's queries from taking
    // the whole of a big host
    const instance = await DuckDBInstance.create(path, { threads: '2' });
    const con = await instance.connect();
    await con.run(SCHEMA);
    const users = new Map<number, string>();
    for (const r of (await con.runAndReadAll('SELECT uid, name FROM users')).getRowObjectsJS()) users.set(r.uid as number, r.name as string);
    const programs = new Map<string, Map<string, number>>();
    const stored = (await con.runAndReadAll('SELECT program, comm, exe FROM programs')).getRowObjectsJS();
    for (const r of stored) programsOf(programs, r.comm as string).set((r.exe as string | null) ?? '', r.program as number);
    const units = new Map<string, number>();
    for (const r of (await con.runAndReadAll('SELECT unit, name FROM units')).getRowObjectsJS()) units.set(r.name as string, r.unit as number);
    const store = new FlowStore(path, instance, con, users, programs, stored.length, units);
    store.protect();
    return store;
  }

  /** 0600 on the database and its write-ahead log (recreated at checkpoints). */
  private protect(): void {
    for (const p of [this.path, `${this.path}.wal`]) {
      try {
        chmodSync(p, 0o600);
      } catch {
        // the log exists only between checkpoints
      }
    }
  }

  /** Appends records (one appender, column chunks), adding users and programs not yet known. */
  async append(flows: StoredFlow[]): Promise<void> {
    if (flows.length === 0) return;
    const ids: RecordIds = { program: new Int32Array(flows.length), unit: new Int32Array(flows.length) };
    for (let k = 0; k < flows.length; k++) {
      const f = flows[k]!;
      if (this.users.get(f.uid) !== f.user) {
        await this.con.run('INSERT OR REPLACE INTO users VALUES (?, ?)', [f.uid, f.user], [INTEGER, VARCHAR]);
        this.users.set(f.uid, f.user);
      }
      const byExe = programsOf(this.programs, f.comm);
      let program = byExe.get(f.exe ?? '');
      if (program === undefined) {
        program = ++this.programCount;
        await this.con.run('INSERT INTO programs VALUES (?, ?, ?)', [program, f.comm, f.exe], [INTEGER, VARCHAR, VARCHAR]);
        byExe.set(f.exe ?? '', program);
      }
      let unitId = this.units.get(f.unit);
      if (unitId === undefined) {
        unitId = this.units.size + 1;
        await this.con.run('INSERT INTO units VALUES (?, ?)', [unitId, f.unit], [INTEGER, VARCHAR]);
        this.units.set(f.unit, unitId);
      }
      ids.program[k] = program;
      ids.unit[k] = unitId;
    }
    const appender = await this.con.createAppender('flows');
    for (const chunk of dataChunks(flows, ids)) appender.appendDataChunk(chunk);
    appender.closeSync();
    this.protect();
  }

  /** Runs a compiled query; every value of it is bound, none is in the SQL text. */
  async query(q: Pick<CompiledQuery, 'sql' | 'params'>): Promise<Record<string, unknown>[]> {
    const types = q.params.map(paramType);
    const reader = await this.con.runAndReadAll(q.sql, q.params as DuckDBValue[], types);
    return reader.getRowObjectsJS() as Record<string, unknown>[];
  }

  /** The name stored for a uid (its latest), or the uid as text. */
  /** every uid that has records (each is named in users before its first record) */
  uids(): number[] {
    return [...this.users.keys()];
  }

  userName(uid: number): string {
    return this.users.get(uid) ?? String(uid);
  }

  async count(): Promise<number> {
    const r = await this.con.runAndReadAll('SELECT COUNT(*)::DOUBLE AS n FROM flows');
    return r.getRowObjectsJS()[0]!.n as number;
  }

  /** Deletes records older than maxAgeMs, then the oldest ones until the file fits
   *  maxBytes (estimated from the bytes per record now: DuckDB reuses freed blocks, the
   *  file itself does not shrink). */
  async enforceRetention(nowMs: number, r: StoreRetention): Promise<{ deleted: number }> {
    let deleted = await this.deleteBefore(nowMs - r.maxAgeMs);
    const bytes = this.sizeBytes();
    const rows = await this.count();
    if (bytes > r.maxBytes && rows > 0) {
      const keep = Math.floor((rows * r.maxBytes) / bytes);
      const cut = await this.con.runAndReadAll('SELECT end_ms FROM flows ORDER BY end_ms DESC LIMIT 1 OFFSET ?', [keep], [DOUBLE]);
      const cutoff = cut.getRowObjectsJS()[0]?.end_ms as number | undefined;
      if (cutoff !== undefined) deleted += await this.deleteBefore(cutoff + 1);
    }
    if (deleted > 0) await this.con.run('CHECKPOINT');
    this.protect();
    return { deleted };
  }

  private async deleteBefore(ms: number): Promise<number> {
    const r = await this.con.run('DELETE FROM flows WHERE end_ms < ?', [ms], [DOUBLE]);
    return r.rowsChanged;
  }

  async getMeta(key: string): Promise<string | undefined> {
    const r = await this.con.runAndReadAll('SELECT value FROM meta WHERE key = ?', [key], [VARCHAR]);
    return r.getRowObjectsJS()[0]?.value as string | undefined;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.con.run('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)', [key, value], [VARCHAR, VARCHAR]);
  }

  sizeBytes(): number {
    return filesSize(this.path, `${this.path}.wal`);
  }

  close(): void {
    this.con.closeSync();
    this.instance.closeSync();
  }
}

function programsOf(programs: Map<string, Map<string, number>>, comm: string): Map<string, number> {
  let byExe = programs.get(comm);
  if (!byExe) {
    byExe = new Map();
    programs.set(comm, byExe);
  }
  return byExe;
}

function paramType(p: Param): DuckDBType {
  if (typeof p === 'bigint') return UHUGEINT;
  return typeof p === 'string' ? VARCHAR : DOUBLE;
}
