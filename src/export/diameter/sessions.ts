// Per-user accounting sessions: when a user's START, INTERIMs and STOP are due, and the
// cumulative counters each record carries. Every record and the session state that goes
// with it are written to the ledger in one transaction. Between records a session's
// counters are saved only when the agent saves its checkpoint: a crash in between is
// made good by the agent handing those deltas over again (see `unconfirmed*`).
import type { UsageInterval } from '../types.js';
import { buildAcr } from './acr.js';
import { RecordType, TerminationCause, type RecordTypeValue } from './dictionary.js';
import type { DiameterOutbox, SessionRow } from './outbox.js';

export interface SessionSettings {
  originHost: string;
  originRealm: string;
  destinationRealm: string;
  destinationHost?: string;
  nasIdentifier: string;
  interimIntervalS: number;
  idleStopS: number;
}

export interface Sessions {
  /** adds one poll's deltas: STARTs sessions for new users, INTERIMs those that are due */
  addUsage(interval: UsageInterval): void;
  /** the agent saved its checkpoint (or goes on without a restart): the deltas added so
   *  far will not be handed over again */
  confirmed(): void;
  /** confirmed() in two steps, for a checkpoint saved in a transaction of the caller's:
   *  writes the sessions as confirmed (inside it), and returns the step for memory, to
   *  run once it committed (a rolled-back checkpoint leaves memory as it was) */
  saveConfirmed(): () => void;
  /** INTERIMs that are due and STOPs for sessions idle longer than idleStopS */
  tick(nowMs: number): void;
  /** the user's last login session ended */
  stopUser(uid: number, nowMs: number): void;
  /** agent shutdown */
  stopAll(nowMs: number): void;
  /** RFC 6733 §9.8.2: the interval in an ACA overrides ours for that session */
  setServerInterim(sessionId: string, seconds: number): void;
  /** users with an open session */
  uids(): Iterable<number>;
  readonly count: number;
}

/** Each session counter, its unconfirmed part, and the delta it adds up. Input is what
 *  the user sent, as NAS accounting counts it (RFC 7155 §4.4.1). */
const COUNTERS = [
  ['inputOctets', 'unconfirmedInputOctets', 'txBytes'],
  ['outputOctets', 'unconfirmedOutputOctets', 'rxBytes'],
  ['inputPackets', 'unconfirmedInputPackets', 'txPackets'],
  ['outputPackets', 'unconfirmedOutputPackets', 'rxPackets'],
] as const;

export function createSessions(
  ledger: DiameterOutbox,
  settings: SessionSettings,
  nextEndToEnd: () => number,
  onEnqueued: () => void,
): Sessions {
  // sessions survive a restart: same Session-Id, record numbers continue
  const byUid = new Map<number, SessionRow>(ledger.loadSessions().map((s) => [s.uid, s]));
  const bySessionId = new Map<string, SessionRow>([...byUid.values()].map((s) => [s.sessionId, s]));
  // After a crash the agent resumes from its last checkpoint and hands the deltas since
  // then over again: per session, that much of the next deltas was counted already.
  // Keyed by user: a session STOPped since the checkpoint (logout) leaves its part to the
  // user's next session.
  const replay = new Map<number, number[]>();
  const replayAlso = (uid: number, counts: number[]): void => {
    if (counts.every((v) => v === 0)) return;
    const sum = replay.get(uid);
    replay.set(uid, sum ? sum.map((v, k) => v + counts[k]!) : counts);
  };
  for (const s of byUid.values()) replayAlso(s.uid, COUNTERS.map(([, unconfirmed]) => s[unconfirmed]));
  for (const { uid, counts } of ledger.loadUnconfirmed()) replayAlso(uid, counts);

  // the low 32 bits of new Session-Ids; persisted once per transaction
  let sequence = ledger.loadSessionSequence();
  let savedSequence = sequence;
  const fresh = new Set<SessionRow>(); // created in this transaction, not yet inserted
  const dirty = new Set<SessionRow>(); // counted since the last save, saved at the next checkpoint

  const interimMs = (s: SessionRow): number => (s.serverInterimS ?? settings.interimIntervalS) * 1000;

  function newSession(uid: number, user: string, nowMs: number): SessionRow {
    // RFC 6733 §8.8: <DiameterIdentity>;<high 32 bits>;<low 32 bits>[;<optional value>]
    const high = Math.floor(nowMs / 1000) >>> 0;
    sequence = (sequence + 1) % 2 ** 32;
    const low = sequence;
    const s: SessionRow = {
      uid,
      user,
      sessionId: `${settings.originHost};${high};${low};ubia-${uid}`,
      startedMs: nowMs,
      lastTrafficMs: nowMs,
      lastRecordMs: nowMs,
      nextRecordNumber: 0,
      serverInterimS: null,
      inputOctets: 0,
      outputOctets: 0,
      inputPackets: 0,
      outputPackets: 0,
      unconfirmedInputOctets: 0,
      unconfirmedOutputOctets: 0,
      unconfirmedInputPackets: 0,
      unconfirmedOutputPackets: 0,
    };
    byUid.set(uid, s);
    bySessionId.set(s.sessionId, s);
    fresh.add(s);
    return s;
  }

  function record(s: SessionRow, type: RecordTypeValue, nowMs: number, terminationCause?: number): void {
    const message = buildAcr({
      ...settings,
      sessionId: s.sessionId,
      recordType: type,
      recordNumber: s.nextRecordNumber,
      userName: s.user,
      eventMs: nowMs,
      inputOctets: s.inputOctets,
      outputOctets: s.outputOctets,
      inputPackets: s.inputPackets,
      outputPackets: s.outputPackets,
      sessionTimeS: Math.max(0, Math.floor((nowMs - s.startedMs) / 1000)),
      interimIntervalS: interimMs(s) / 1000,
      terminationCause,
      endToEnd: nextEndToEnd(),
    });
    ledger.enqueue({ sessionId: s.sessionId, recordNumber: s.nextRecordNumber, recordType: type, message });
    s.nextRecordNumber += 1;
    s.lastRecordMs = nowMs;
    if (type === RecordType.Stop) {
      if (!fresh.delete(s)) ledger.deleteSession(s.uid);
      dirty.delete(s);
      byUid.delete(s.uid);
      bySessionId.delete(s.sessionId);
      const unconfirmed = COUNTERS.map(([, u]) => s[u]);
      if (unconfirmed.some((v) => v > 0)) ledger.keepUnconfirmed(s.uid, unconfirmed);
    } else {
      save(s);
    }
  }

  function count(s: SessionRow, u: UsageInterval['users'][number]): void {
    const again = replay.get(s.uid);
    COUNTERS.forEach(([total, unconfirmed, source], k) => {
      let d = u[source];
      if (again) {
        const counted = Math.min(d, again[k]!);
        again[k]! -= counted;
        d -= counted;
      }
      s[total] += d;
      s[unconfirmed] += d;
    });
    if (again?.every((v) => v === 0)) replay.delete(s.uid);
  }

  function interimsDue(nowMs: number): void {
    for (const s of byUid.values()) {
      if (nowMs - s.lastRecordMs >= interimMs(s)) record(s, RecordType.Interim, nowMs);
    }
  }

  function save(s: SessionRow): void {
    dirty.delete(s);
    if (fresh.delete(s)) ledger.insertSession(s);
    else ledger.updateSession(s);
  }

  function saveConfirmed(): () => void {
    const settled = (s: SessionRow): SessionRow => ({ ...s, ...Object.fromEntries(COUNTERS.map(([, unconfirmed]) => [unconfirmed, 0])) });
    ledger.transaction(() => {
      ledger.clearUnconfirmed();
      for (const s of dirty) ledger.updateSession(settled(s));
    });
    return () => {
      replay.clear();
      for (const s of byUid.values()) for (const [, unconfirmed] of COUNTERS) s[unconfirmed] = 0;
      dirty.clear();
    };
  }

  /** one transaction per change, then wake the sender */
  function changed(fn: () => void): void {
    ledger.transaction(() => {
      fn();
      if (sequence !== savedSequence) ledger.saveSessionSequence(sequence);
    });
    savedSequence = sequence;
    onEnqueued();
  }

  return {
    addUsage(interval) {
      changed(() => {
        for (const u of interval.users) {
          if (u.rxBytes === 0 && u.txBytes === 0 && u.rxPackets === 0 && u.txPackets === 0) continue;
          const existing = byUid.get(u.uid);
          const s = existing ?? newSession(u.uid, u.user, interval.startMs);
          count(s, u);
          s.lastTrafficMs = interval.endMs;
          if (!existing) record(s, RecordType.Start, interval.endMs);
          else dirty.add(s);
        }
        interimsDue(interval.endMs);
      });
    },
    confirmed() {
      saveConfirmed()();
    },
    saveConfirmed,
    tick(nowMs) {
      const idle = [...byUid.values()].filter((s) => nowMs - s.lastTrafficMs >= settings.idleStopS * 1000);
      const due = [...byUid.values()].some((s) => nowMs - s.lastRecordMs >= interimMs(s));
      if (idle.length === 0 && !due) return;
      changed(() => {
        for (const s of idle) record(s, RecordType.Stop, nowMs, TerminationCause.SessionTimeout);
        interimsDue(nowMs);
      });
    },
    stopUser(uid, nowMs) {
      const s = byUid.get(uid);
      if (s) changed(() => record(s, RecordType.Stop, nowMs, TerminationCause.Logout));
    },
    stopAll(nowMs) {
      if (byUid.size === 0) return;
      changed(() => {
        for (const s of [...byUid.values()]) record(s, RecordType.Stop, nowMs, TerminationCause.Administrative);
      });
    },
    setServerInterim(sessionId, seconds) {
      const s = bySessionId.get(sessionId);
      if (!s || seconds === 0 || s.serverInterimS === seconds) return;
      s.serverInterimS = seconds;
      save(s);
    },
    uids() {
      return byUid.keys();
    },
    get count() {
      return byUid.size;
    },
  };
}
