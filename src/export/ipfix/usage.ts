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

/** What survives a restart of the agent (saved with its checkpoint). */
export interface UsageState {
  /** the open window; null when nothing has been added to it */
  startMs: number | null;
  endMs: number;
  users: UserRecord[];
}

export interface UsageAggregator {
  /** adds one poll's deltas; a window that is complete waits for the next checkpoint */
  add(interval: UsageInterval): void;
  /** the state to save with the agent's checkpoint (inside its transaction) */
  atCheckpoint(): UsageState;
  /** that checkpoint committed: returns the records of the windows completed before it */
  checkpointed(): UserRecord[];
  /** exporter closing, right after a checkpoint (the agent's shutdown and reload make
   *  one first): every record, the open window's included; the state is then empty */
  flush(): UserRecord[];
}

export function createUsageAggregator(intervalMs: number, resume?: UsageState): UsageAggregator {
  let windowStart = resume?.startMs ?? null;
  let windowEnd = resume?.endMs ?? 0;
  let users = new Map<number, UserRecord>(resume?.users.map((u) => [u.uid, { ...u }]));
  /** records of complete windows, sent once the checkpoint behind them is saved */
  let due: UserRecord[] = [];

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
        let r = users.get(u.uid);
        if (r === undefined) {
          r = { uid: u.uid, user: u.user, startMs: windowStart, endMs: 0, ...zeroCounters() };
          users.set(u.uid, r);
        }
        r.user = u.user;
        addInto(r, u);
      }
      if (windowEnd - windowStart >= intervalMs) due.push(...closeWindow());
    },
    atCheckpoint() {
      return { startMs: windowStart, endMs: windowEnd, users: [...users.values()] };
    },
    checkpointed() {
      const out = due;
      due = [];
      return out;
    },
    flush() {
      const records = [...due, ...closeWindow()];
      due = [];
      return records;
    },
  };
}
