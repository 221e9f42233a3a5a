// Log lines that a client can cause (refusals, time-outs, failed requests) are rate-limited
// per uid, so no local user can fill the journal or the log file through the agent; the
// same per-uid count limits the refusals the agent writes out (server.ts).
import type { Logger } from 'pino';

const WINDOW_MS = 60_000;

export type ClientLog = (uid: number, level: 'info' | 'warn' | 'error', fields: object, msg: string) => void;

/** Counts each uid's events in fixed windows of `windowMs`: returns how many this one makes
 *  in the uid's current window (1 for the first). Windows of uids that went quiet are
 *  dropped as the next one starts: the map holds the uids active in the last window, not
 *  every uid ever seen. */
export function countPerUid(windowMs: number, now: () => number = Date.now): (uid: number) => number {
  const windows = new Map<number, { start: number; events: number }>();
  return (uid) => {
    const t = now();
    let w = windows.get(uid);
    if (!w || t - w.start >= windowMs) {
      for (const [u, old] of windows) if (t - old.start >= windowMs) windows.delete(u);
      w = { start: t, events: 0 };
      windows.set(uid, w);
    }
    return ++w.events;
  };
}

/** At most `perMinute` lines per uid per minute; the first one past it says so. */
export function rateLimitedLog(logger: Logger, perMinute: number, now: () => number = Date.now): ClientLog {
  const count = countPerUid(WINDOW_MS, now);
  return (uid, level, fields, msg) => {
    const lines = count(uid);
    if (lines <= perMinute) logger[level]({ ...fields, uid }, msg);
    else if (lines === perMinute + 1) logger.warn({ uid }, `control: more than ${perMinute} log lines about this client in a minute; dropping them until the minute is over`);
  };
}
