// When the poll loop's steps run: polls and flushes at the configured intervals (set
// again after a reload), the ledger's roll-up hourly, and systemd's watchdog pings while
// the poll loop is healthy.
import type { UbiaConfig } from '../config/config.js';
import { HOUR_MS } from '../ledger/ledger.js';
import type { PollLoop } from './poll-loop.js';

export interface Scheduler {
  /** (re)starts the poll, flush and roll-up timers at the intervals configured now */
  schedule(): void;
  /** clears every timer, the watchdog's included */
  stop(): void;
}

export interface SchedulerOptions {
  loop: PollLoop;
  /** the configuration in force (a reload replaces it) */
  config(): UbiaConfig;
  sdNotify(state: string): boolean;
  env: NodeJS.ProcessEnv;
}

/** Starts the watchdog pings at once; the other timers start with `schedule()`. */
export function createScheduler({ loop, config, sdNotify, env }: SchedulerOptions): Scheduler {
  const timers = {
    poll: undefined as NodeJS.Timeout | undefined,
    flush: undefined as NodeJS.Timeout | undefined,
    rollUp: undefined as NodeJS.Timeout | undefined,
    watchdog: undefined as NodeJS.Timeout | undefined,
  };
  // Pings follow the manager's interval, not the poll timer (poll_interval may exceed
  // WatchdogSec); half of it, as sd_watchdog_enabled(3) advises.
  const watchdogMs = watchdogIntervalMs(env);
  if (watchdogMs !== undefined) {
    timers.watchdog = setInterval(() => {
      if (loop.healthy(Date.now())) sdNotify('WATCHDOG=1');
    }, watchdogMs / 2);
  }
  const schedule = () => {
    clearInterval(timers.poll);
    clearInterval(timers.flush);
    clearInterval(timers.rollUp);
    timers.poll = setInterval(loop.poll, config().agent.poll_interval * 1000);
    timers.flush = setInterval(loop.flush, config().ledger.flush_interval * 1000);
    timers.rollUp = setInterval(loop.rollUp, HOUR_MS);
  };
  const stop = () => {
    clearInterval(timers.poll);
    clearInterval(timers.flush);
    clearInterval(timers.rollUp);
    clearInterval(timers.watchdog);
  };
  return { schedule, stop };
}

/** sd_watchdog_enabled(3): $WATCHDOG_USEC, for us unless $WATCHDOG_PID names another process. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== process.pid) return undefined;
  return usec / 1000;
}
