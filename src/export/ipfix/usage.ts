// Sums the agent's per-poll user deltas into one record per user per usage interval.
import { addInto, isZero, zeroCounters } from '../../core/counters.js';
import type { TrafficCounters } from '../../kernel/types.js';
import type { UsageInterval } from '../types.js';

export interface UserRecord extends TrafficCounters {
  uid: number;
  user: string;
  startMs: number;
  endMs: number;
}

export interface UsageAggregator {
  /** adds one poll's deltas; returns the records of an interval that is complete */
  add(interval: UsageInterval): UserRecord[];
  /** records for the partial interval (shutdown) */
  flush(): UserRecord[];
}

export function createUsageAggregator(intervalMs: number): UsageAggregator {
  let windowStart: number | null = null;
  let windowEnd = 0;
  let users = new Map<number, UserRecord>();

  function take(): UserRecord[] {
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
      return windowEnd - windowStart >= intervalMs ? take() : [];
    },
    flush: take,
  };
}
