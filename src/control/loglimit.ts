// Log lines that a client can cause (refusals, time-outs, failed requests) are rate-limited
// per uid, so no local user can fill the journal or the log file through the agent.
import type { Logger } from 'pino';

const WINDOW_MS = 60_000;

export type ClientLog = (uid: number, level: 'info' | 'warn' | 'error', fields: object, msg: string) => void;

/** At most `perMinute` lines per uid per minute; the first one past it says so. */
export function rateLimitedLog(logger: Logger, perMinute: number, now: () => number = Date.now): ClientLog {
  const windows = new Map<number, { start: number; lines: number }>();
  return (uid, level, fields, msg) => {
    const t = now();
    let w = windows.get(uid);
    if (!w || t - w.start >= WINDOW_MS) {
      // windows of uids that went quiet are dropped as the next one starts: the map holds
      // the uids active in the last minute, not every uid ever seen
      for (const [u, old] of windows) if (t - old.start >= WINDOW_MS) windows.delete(u);
      w = { start: t, lines: 0 };
      windows.set(uid, w);
    }
    w.lines++;
    if (w.lines <= perMinute) logger[level]({ ...fields, uid }, msg);
    else if (w.lines === perMinute + 1) logger.warn({ uid }, `control: more than ${perMinute} log lines about this client in a minute; dropping them until the minute is over`);
  };
}
