// Sums the agent's per-poll user deltas into one record per user per usage interval.
import type { UsageInterval } from '../types.js';

export interface UserRecord {
  uid: number;
  user: string;
  startMs: number;
  endMs: number;
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  rxPayloadBytes: number;
  txPayloadBytes: number;
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
      if (u.rxBytes + u.txBytes + u.rxPackets + u.txPackets + u.rxPayloadBytes + u.txPayloadBytes === 0) continue;
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
          r = { uid: u.uid, user: u.user, startMs: windowStart, endMs: 0, rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxPayloadBytes: 0, txPayloadBytes: 0 };
          users.set(u.uid, r);
        }
        r.user = u.user;
        r.rxBytes += u.rxBytes; r.txBytes += u.txBytes;
        r.rxPackets += u.rxPackets; r.txPackets += u.txPackets;
        r.rxPayloadBytes += u.rxPayloadBytes; r.txPayloadBytes += u.txPayloadBytes;
      }
      return windowEnd - windowStart >= intervalMs ? take() : [];
    },
    flush: take,
  };
}
