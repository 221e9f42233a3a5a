// Sums the agent's per-poll user deltas into one record per user per usage interval,
// exactly across a crash of the agent (docs/ipfix.md "Per-user records across a crash"):
// a complete window's records are handed to the collectors only once the agent's
// checkpoint behind them is saved, and the open window is saved in that same transaction.
// After a crash the agent resumes from that checkpoint and hands the deltas since then
// over again: they go into the saved open window, none into a record already sent.
import { addInto, isZero, zeroCounters } from '../../core/counters.js';
import type { TrafficCounters } from '../../kernel/types.js';
import type { UsageInterval } from '../types.js';

export interface UserRecord extends TrafficCounters {
  uid: number;
  user: string;
  startMs: number;
  endMs: number;
}

export interface UserCounts extends TrafficCounters {
  uid: number;
}

/** What survives a restart of the agent (saved with its checkpoint). */
export interface UsageState {
  /** the open window; null when nothing has been added to it */
  startMs: number | null;
  endMs: number;
  users: UserRecord[];
  /** per user, deltas the agent will hand over again that records already carry: what
   *  was added since the checkpoint when the exporter closed (shutdown, reload) */
  replay: UserCounts[];
}

export interface UsageAggregator {
  /** adds one poll's deltas; a window that is complete waits for the next checkpoint */
  add(interval: UsageInterval): void;
  /** the state to save with the agent's checkpoint (inside its transaction) */
  atCheckpoint(): UsageState;
  /** that checkpoint committed: returns the records of the windows completed before it */
  checkpointed(): UserRecord[];
  /** exporter closing: every record, the open window's included, and the state to save
   *  now (the deltas since the checkpoint are in those records) */
  flush(): { records: UserRecord[]; state: UsageState };
}

const counterKeys = Object.keys(zeroCounters()) as (keyof TrafficCounters)[];

export function createUsageAggregator(intervalMs: number, resume?: UsageState): UsageAggregator {
  let windowStart = resume?.startMs ?? null;
  let windowEnd = resume?.endMs ?? 0;
  let users = new Map<number, UserRecord>(resume?.users.map((u) => [u.uid, { ...u }]));
  /** records of complete windows, sent once the checkpoint behind them is saved */
  let due: UserRecord[] = [];
  /** per user, what the next deltas repeat of what records already carry */
  const replay = new Map<number, UserCounts>(resume?.replay.map((r) => [r.uid, { ...r }]));
  /** per user, every delta handed over since the checkpoint (before the replay is taken off) */
  const handed = new Map<number, UserCounts>();

  const sumInto = (into: Map<number, UserCounts>, uid: number, c: TrafficCounters): void => {
    let sum = into.get(uid);
    if (!sum) {
      sum = { uid, ...zeroCounters() };
      into.set(uid, sum);
    }
    addInto(sum, c);
  };

  /** the part of a delta no record carries yet (takes it off the replay) */
  function fresh(uid: number, delta: TrafficCounters): TrafficCounters {
    const again = replay.get(uid);
    if (!again) return delta;
    const out = { ...zeroCounters() };
    for (const k of counterKeys) {
      const counted = Math.min(delta[k], again[k]);
      again[k] -= counted;
      out[k] = delta[k] - counted;
    }
    if (isZero(again)) replay.delete(uid);
    return out;
  }

  function closeWindow(): UserRecord[] {
    const out: UserRecord[] = [];
    for (const u of users.values()) {
      if (isZero(u)) continue;
      u.endMs = windowEnd;
      out.push(u);
    }
    users = new Map();
    windowStart = null;
    return out;
  }

  return {
    add(interval) {
      windowStart ??= interval.startMs;
      windowEnd = Math.max(windowEnd, interval.endMs);
      for (const u of interval.users) {
        sumInto(handed, u.uid, u);
        let r = users.get(u.uid);
        if (r === undefined) {
          r = { uid: u.uid, user: u.user, startMs: windowStart, endMs: 0, ...zeroCounters() };
          users.set(u.uid, r);
        }
        r.user = u.user;
        addInto(r, fresh(u.uid, u));
      }
      if (windowEnd - windowStart >= intervalMs) due.push(...closeWindow());
    },
    atCheckpoint() {
      // the agent resumes from this checkpoint: nothing handed over so far comes again
      return { startMs: windowStart, endMs: windowEnd, users: [...users.values()], replay: [] };
    },
    checkpointed() {
      replay.clear();
      handed.clear();
      const out = due;
      due = [];
      return out;
    },
    flush() {
      const records = [...due, ...closeWindow()];
      due = [];
      // a crash before the next checkpoint hands these deltas over again
      for (const h of handed.values()) sumInto(replay, h.uid, h);
      handed.clear();
      return { records, state: { startMs: null, endMs: 0, users: [], replay: [...replay.values()] } };
    },
  };
}
