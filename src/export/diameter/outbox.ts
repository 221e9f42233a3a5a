// The Diameter exporter's tables in the agent's ledger database: open accounting
// sessions and the outbox of ACRs. An ACR is written here before it is sent and deleted
// only when a 2001 ACA arrives (RFC 6733 §9.4), so records survive outages and crashes.
import type BetterSqlite3 from 'better-sqlite3';

type Db = BetterSqlite3.Database;

export interface SessionRow {
  /** the user's uid ("1000") for a user's session, uid and job ("1000:1234") for a job's */
  sessionKey: string;
  uid: number;
  user: string;
  /** the batch job of a job's session (`session_per = "job"`); null for a user's */
  jobId: string | null;
  /** the job's cgroup below the cgroup2 mount: the session STOPs when it goes away */
  jobCgroup: string | null;
  sessionId: string;
  startedMs: number;
  lastTrafficMs: number;
  lastRecordMs: number;
  /** the number the next ACR of this session gets */
  nextRecordNumber: number;
  /** Acct-Interim-Interval the server asked for in an ACA, if any */
  serverInterimS: number | null;
  inputOctets: number;
  outputOctets: number;
  inputPackets: number;
  outputPackets: number;
  /** the part of the counters added since the agent last saved its checkpoint: after a
   *  crash the agent hands those deltas over again, and they must not count twice */
  unconfirmedInputOctets: number;
  unconfirmedOutputOctets: number;
  unconfirmedInputPackets: number;
  unconfirmedOutputPackets: number;
}

export interface OutboxRecord {
  id: number;
  sessionId: string;
  recordNumber: number;
  recordType: number;
  message: Buffer;
  /** possibly sent before (its id is at or below the sent mark): the next send carries
   *  the T flag (RFC 6733 §3) */
  sent: boolean;
}

export interface Rejection {
  resultCode: number;
  detail: string;
  atMs: number;
}

export interface DiameterOutbox {
  loadSessions(): SessionRow[];
  insertSession(s: SessionRow): void;
  updateSession(s: SessionRow): void;
  deleteSession(sessionKey: string): void;
  /** a session stopped with unconfirmed counts: after a crash the agent hands them over
   *  again, and the next session of its key must not count them (added up per key) */
  keepUnconfirmed(sessionKey: string, counts: number[]): void;
  /** per session key, what stopped sessions counted that the agent has not checkpointed */
  loadUnconfirmed(): { sessionKey: string; counts: number[] }[];
  /** the agent saved its checkpoint: nothing is unconfirmed any more */
  clearUnconfirmed(): void;
  /** the last sequence number used in a Session-Id (0 at first) */
  loadSessionSequence(): number;
  saveSessionSequence(value: number): void;
  enqueue(r: Omit<OutboxRecord, 'id' | 'sent'>): number;
  /** records after `afterId`, oldest first */
  readOutbox(afterId: number, limit: number): OutboxRecord[];
  /** Records are first sent in id order, so one number says which may have been sent:
   *  every id up to the mark. Saved before the bytes leave, so after a crash a re-send
   *  carries T. */
  saveSentMark(id: number): void;
  loadSentMark(): number;
  /** acknowledged (2001) or rejected for good */
  remove(ids: number[]): void;
  reject(id: number, r: Rejection): void;
  outboxDepth(): number;
  rejectedCount(): number;
  /** runs fn in one transaction (one fsync in WAL mode) */
  transaction<T>(fn: () => T): T;
  /** false once the agent has closed the database (it gives exporters 1.5 s at shutdown) */
  readonly open: boolean;
}

const SESSION_COLUMNS = `
      session_key TEXT PRIMARY KEY,
      uid INTEGER NOT NULL,
      job_id TEXT,
      job_cgroup TEXT,
      user TEXT NOT NULL,
      session_id TEXT NOT NULL,
      started_ms INTEGER NOT NULL,
      last_traffic_ms INTEGER NOT NULL,
      last_record_ms INTEGER NOT NULL,
      next_record_number INTEGER NOT NULL,
      server_interim_s INTEGER,
      input_octets INTEGER NOT NULL,
      output_octets INTEGER NOT NULL,
      input_packets INTEGER NOT NULL,
      output_packets INTEGER NOT NULL,
      unconfirmed_input_octets INTEGER NOT NULL,
      unconfirmed_output_octets INTEGER NOT NULL,
      unconfirmed_input_packets INTEGER NOT NULL,
      unconfirmed_output_packets INTEGER NOT NULL`;

const STOPPED_UNCONFIRMED_COLUMNS = `
      session_key TEXT PRIMARY KEY,
      input_octets INTEGER NOT NULL,
      output_octets INTEGER NOT NULL,
      input_packets INTEGER NOT NULL,
      output_packets INTEGER NOT NULL`;

/** Ledgers from before job sessions keyed both tables by uid: re-key them by the uid as
 *  text, the key of a user's session (one transaction; the open sessions carry on). */
function migrateToSessionKeys(db: Db): void {
  const columns = (table: string) => (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);
  const old = columns('diameter_session');
  if (old.length === 0 || old.includes('session_key')) return;
  db.transaction(() => {
    db.exec(`
      ALTER TABLE diameter_session RENAME TO diameter_session_by_uid;
      CREATE TABLE diameter_session (${SESSION_COLUMNS});
      INSERT INTO diameter_session SELECT CAST(uid AS TEXT), uid, NULL, NULL, user, session_id, started_ms, last_traffic_ms,
        last_record_ms, next_record_number, server_interim_s, input_octets, output_octets, input_packets, output_packets,
        unconfirmed_input_octets, unconfirmed_output_octets, unconfirmed_input_packets, unconfirmed_output_packets
        FROM diameter_session_by_uid;
      DROP TABLE diameter_session_by_uid;
    `);
    if (columns('diameter_stopped_unconfirmed').includes('uid')) {
      db.exec(`
        ALTER TABLE diameter_stopped_unconfirmed RENAME TO diameter_stopped_unconfirmed_by_uid;
        CREATE TABLE diameter_stopped_unconfirmed (${STOPPED_UNCONFIRMED_COLUMNS});
        INSERT INTO diameter_stopped_unconfirmed SELECT CAST(uid AS TEXT), input_octets, output_octets, input_packets, output_packets
          FROM diameter_stopped_unconfirmed_by_uid;
        DROP TABLE diameter_stopped_unconfirmed_by_uid;
      `);
    }
  })();
}

export function openDiameterOutbox(db: Db): DiameterOutbox {
  migrateToSessionKeys(db);
  db.exec(`
    CREATE TABLE IF NOT EXISTS diameter_session (${SESSION_COLUMNS});
    CREATE TABLE IF NOT EXISTS diameter_outbox (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      session_id TEXT NOT NULL,
      record_number INTEGER NOT NULL,
      record_type INTEGER NOT NULL,
      message BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS diameter_rejected (
      session_id TEXT NOT NULL,
      record_number INTEGER NOT NULL,
      result_code INTEGER NOT NULL,
      detail TEXT NOT NULL,
      at_ms INTEGER NOT NULL,
      message BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS diameter_stopped_unconfirmed (${STOPPED_UNCONFIRMED_COLUMNS});
    CREATE TABLE IF NOT EXISTS diameter_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
  `);

  const st = {
    sessions: db.prepare(`SELECT session_key AS sessionKey, uid, job_id AS jobId, job_cgroup AS jobCgroup, user, session_id AS sessionId, started_ms AS startedMs, last_traffic_ms AS lastTrafficMs,
        last_record_ms AS lastRecordMs, next_record_number AS nextRecordNumber, server_interim_s AS serverInterimS,
        input_octets AS inputOctets, output_octets AS outputOctets, input_packets AS inputPackets, output_packets AS outputPackets,
        unconfirmed_input_octets AS unconfirmedInputOctets, unconfirmed_output_octets AS unconfirmedOutputOctets,
        unconfirmed_input_packets AS unconfirmedInputPackets, unconfirmed_output_packets AS unconfirmedOutputPackets
      FROM diameter_session`),
    insertSession: db.prepare(`INSERT INTO diameter_session VALUES
      (@sessionKey, @uid, @jobId, @jobCgroup, @user, @sessionId, @startedMs, @lastTrafficMs, @lastRecordMs, @nextRecordNumber, @serverInterimS,
       @inputOctets, @outputOctets, @inputPackets, @outputPackets,
       @unconfirmedInputOctets, @unconfirmedOutputOctets, @unconfirmedInputPackets, @unconfirmedOutputPackets)`),
    updateSession: db.prepare(`UPDATE diameter_session SET last_traffic_ms = @lastTrafficMs, last_record_ms = @lastRecordMs,
        next_record_number = @nextRecordNumber, server_interim_s = @serverInterimS, input_octets = @inputOctets,
        output_octets = @outputOctets, input_packets = @inputPackets, output_packets = @outputPackets,
        unconfirmed_input_octets = @unconfirmedInputOctets, unconfirmed_output_octets = @unconfirmedOutputOctets,
        unconfirmed_input_packets = @unconfirmedInputPackets, unconfirmed_output_packets = @unconfirmedOutputPackets
      WHERE session_key = @sessionKey`),
    deleteSession: db.prepare('DELETE FROM diameter_session WHERE session_key = ?'),
    clearUnconfirmed: db.prepare(`UPDATE diameter_session SET unconfirmed_input_octets = 0, unconfirmed_output_octets = 0,
        unconfirmed_input_packets = 0, unconfirmed_output_packets = 0
      WHERE unconfirmed_input_octets + unconfirmed_output_octets + unconfirmed_input_packets + unconfirmed_output_packets > 0`),
    clearStoppedUnconfirmed: db.prepare('DELETE FROM diameter_stopped_unconfirmed'),
    keepUnconfirmed: db.prepare(`INSERT INTO diameter_stopped_unconfirmed VALUES (?, ?, ?, ?, ?) ON CONFLICT(session_key) DO UPDATE SET
        input_octets = input_octets + excluded.input_octets, output_octets = output_octets + excluded.output_octets,
        input_packets = input_packets + excluded.input_packets, output_packets = output_packets + excluded.output_packets`),
    loadUnconfirmed: db.prepare('SELECT session_key, input_octets, output_octets, input_packets, output_packets FROM diameter_stopped_unconfirmed').raw(),
    loadSeq: db.prepare(`SELECT value FROM diameter_meta WHERE key = 'session_seq'`),
    saveSeq: db.prepare(`INSERT INTO diameter_meta VALUES ('session_seq', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`),
    enqueue: db.prepare('INSERT INTO diameter_outbox (session_id, record_number, record_type, message) VALUES (?, ?, ?, ?)'),
    read: db.prepare(`SELECT id, session_id AS sessionId, record_number AS recordNumber, record_type AS recordType, message,
        id <= coalesce((SELECT value FROM diameter_meta WHERE key = 'sent_mark'), 0) AS sent
      FROM diameter_outbox WHERE id > ? ORDER BY id LIMIT ?`),
    loadSentMark: db.prepare(`SELECT value FROM diameter_meta WHERE key = 'sent_mark'`),
    saveSentMark: db.prepare(`INSERT INTO diameter_meta VALUES ('sent_mark', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`),
    // a batch of ids as one JSON array: one statement per batch, not one per record
    remove: db.prepare('DELETE FROM diameter_outbox WHERE id IN (SELECT value FROM json_each(?))'),
    removeOne: db.prepare('DELETE FROM diameter_outbox WHERE id = ?'),
    reject: db.prepare(`INSERT INTO diameter_rejected SELECT session_id, record_number, ?, ?, ?, message FROM diameter_outbox WHERE id = ?`),
    depth: db.prepare('SELECT count(*) AS n FROM diameter_outbox'),
    rejected: db.prepare('SELECT count(*) AS n FROM diameter_rejected'),
  };

  const transaction = <T>(fn: () => T): T => (db.inTransaction ? fn() : db.transaction(fn)());

  return {
    loadSessions: () => st.sessions.all() as SessionRow[],
    insertSession: (s) => void st.insertSession.run(s),
    updateSession: (s) => void st.updateSession.run(s),
    deleteSession: (key) => void st.deleteSession.run(key),
    keepUnconfirmed: (key, counts) => void st.keepUnconfirmed.run(key, ...counts),
    loadUnconfirmed: () =>
      (st.loadUnconfirmed.all() as [string, ...number[]][]).map(([sessionKey, ...counts]) => ({ sessionKey, counts })),
    clearUnconfirmed: () =>
      transaction(() => {
        st.clearUnconfirmed.run();
        st.clearStoppedUnconfirmed.run();
      }),
    loadSessionSequence: () => (st.loadSeq.get() as { value: number } | undefined)?.value ?? 0,
    saveSessionSequence: (value) => void st.saveSeq.run(value),
    enqueue: (r) => Number(st.enqueue.run(r.sessionId, r.recordNumber, r.recordType, r.message).lastInsertRowid),
    readOutbox: (afterId, limit) =>
      (st.read.all(afterId, limit) as (Omit<OutboxRecord, 'sent'> & { sent: number })[]).map((r) => ({ ...r, sent: r.sent === 1 })),
    saveSentMark: (id) => void st.saveSentMark.run(id),
    loadSentMark: () => (st.loadSentMark.get() as { value: number } | undefined)?.value ?? 0,
    remove: (ids) => void st.remove.run(JSON.stringify(ids)),
    reject: (id, r) =>
      transaction(() => {
        st.reject.run(r.resultCode, r.detail, r.atMs, id);
        st.removeOne.run(id);
      }),
    outboxDepth: () => (st.depth.get() as { n: number }).n,
    rejectedCount: () => (st.rejected.get() as { n: number }).n,
    transaction,
    get open() {
      return db.open;
    },
  };
}
