// The agent's work, one step at a time (scheduler.ts says when): a poll reads the meter
// into the accounting and hands usage and flows to the exporters; a flush commits the
// ledger and checkpoint; a roll-up applies retention. It keeps the pins in place and
// knows its own health: when it last polled and flushed, and what failed.
import type { Logger } from 'pino';
import { humanRate } from '../core/units.js';
import type { UbiaConfig } from '../config/config.js';
import type { AgentHealth } from '../export/types.js';
import { DAY_MS, type Ledger } from '../ledger/ledger.js';
import type { Accounting } from './accounting.js';
import type { ExporterSet } from './exporter-set.js';
import type { MeterReader } from './meter.js';
import type { QuotaEngine } from './quota/engine.js';

export interface PollLoop {
  poll(): void;
  flush(): void;
  rollUp(): void;
  /** the last poll succeeded within two intervals (the watchdog pings only then) */
  healthy(now: number): boolean;
  /** the figures exporters publish (OTLP, Prometheus) */
  health(): AgentHealth;
  /** one line for systemd's STATUS= */
  statusLine(): string;
  /** times in ms since the epoch */
  times(): { lastPollAt?: number; lastFlushAt?: number };
  lastFlushError(): string | undefined;
}

export interface PollLoopOptions {
  meter: MeterReader;
  /** where the meter keeps its pins (put back when removed) */
  pinDir: string;
  accounting: Accounting;
  ledger: Ledger;
  exporters: ExporterSet;
  quotas: QuotaEngine;
  logger: Logger;
  bootId: string;
  /** the configuration in force (a reload replaces it) */
  config(): UbiaConfig;
  sdNotify(state: string): boolean;
}

export const retentionOf = (c: UbiaConfig) => ({
  minuteMs: c.ledger.minute_retention_days * DAY_MS,
  hourMs: c.ledger.hour_retention_days * DAY_MS,
  dayMs: c.ledger.day_retention_days * DAY_MS,
});

export function createPollLoop({ meter, pinDir, accounting, ledger, exporters, quotas, logger, bootId, config, sdNotify }: PollLoopOptions): PollLoop {
  let lastPollSeconds = 0;
  let lastPollAt: number | undefined;
  const health = (): AgentHealth => {
    const unattributed = { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0 };
    for (const i of meter.readInterfaces()) {
      unattributed.rxBytes += i.unattributed.rxBytes;
      unattributed.txBytes += i.unattributed.txBytes;
      unattributed.rxPackets += i.unattributed.rxPackets;
      unattributed.txPackets += i.unattributed.txPackets;
    }
    const statuses = exporters.list().map((e) => e.status());
    const peers = statuses.flatMap((s) => (s.peers ?? []).map((p) => ({ peer: p.name, state: p.state })));
    return { unattributed, meter: meter.health(), lastPollSeconds, lastPollAtMs: lastPollAt, exporters: statuses, diameterPeers: peers };
  };

  let lastFlushAt: number | undefined;
  let flushError: string | undefined;
  let pollError: string | undefined;

  let pinsError: string | undefined;
  let quotaError: string | undefined;
  /** Thresholds and limits of the users this poll moved; a failure (the ledger's disk)
   *  leaves them to the next poll: their alerts are only late. */
  const checkQuotas = (now: number) => {
    try {
      quotas.check(now);
      if (quotaError !== undefined) logger.info('quota checks work again');
      quotaError = undefined;
    } catch (err) {
      const msg = (err as Error).message;
      if (quotaError !== msg) logger.error({ err }, 'quota check failed; retrying every poll');
      quotaError = msg;
    }
  };
  /** Someone removed the pin directory (or pins in it): the programs still count, as we
   *  hold them, but a restart would find nothing. Put the pins back. */
  const keepPinned = () => {
    try {
      const lost = meter.checkPins();
      if (lost.length) logger.warn({ pinDir, lost: lost.length, example: lost[0] }, 'pins were removed while the agent ran: pinned again (counting never stopped)');
      pinsError = undefined;
    } catch (err) {
      const msg = (err as Error).message;
      if (pinsError !== msg) logger.error({ err }, 'pins were removed and cannot be put back; a restart would lose the kernel counters');
      pinsError = msg;
    }
  };

  const poll = () => {
    const now = Date.now();
    keepPinned();
    try {
      const { usage, flows } = accounting.poll(now);
      lastPollAt = now;
      lastPollSeconds = (Date.now() - now) / 1000;
      if (pollError !== undefined) logger.info('meter reads work again');
      pollError = undefined;
      checkQuotas(now);
      const interval = exporters.list().length ? usage() : undefined;
      // workloads alone: a user's delta booked over them a settle after it came (workloads.ts)
      if (interval && (interval.users.length || interval.workloads?.length || interval.endedWorkloads?.length)) exporters.each('usage', (e) => e.usage(interval));
      if (flows && exporters.list().length) {
        const list = flows();
        exporters.each('activeFlows', (e) => e.activeFlows?.(list, now));
      }
    } catch (err) {
      const msg = (err as Error).message;
      if (pollError !== msg) logger.error({ err }, 'reading the meter failed; retrying every poll');
      pollError = msg;
    }
  };

  // Healthy = the last poll succeeded within two intervals: a poll loop that stops (or
  // keeps failing) stops the watchdog pings, and systemd restarts us.
  const healthy = (now: number) => lastPollAt !== undefined && now - lastPollAt <= 2 * config().agent.poll_interval * 1000 + 1000;
  const statusLine = () => {
    let rx = 0;
    let tx = 0;
    for (const r of accounting.rates().values()) {
      rx += r.rxRate;
      tx += r.txRate;
    }
    const unhealthy = exporters.list().map((e) => e.status()).filter((s) => s.state !== 'ok');
    return [
      `${accounting.rates().size} users active, in ${humanRate(rx)}, out ${humanRate(tx)}`,
      `${accounting.activeFlowCount()} flows`,
      unhealthy.length ? unhealthy.map((s) => `${s.name} ${s.state}`).join(', ') : exporters.list().length ? 'exporters ok' : 'no exporters',
      ...(pollError ? ['meter reads failing'] : []),
      ...(flushError ? ['ledger writes failing'] : []),
    ].join('; ');
  };

  const flush = () => {
    sdNotify(`STATUS=${statusLine()}`);
    // Exporters being replaced (a reload) hold the polls since the last checkpoint for the
    // new ones: a checkpoint now would confirm deltas no exporter has saved yet, and a
    // crash before the new ones run would lose them to every exporter. The reload flushes
    // once they run.
    if (exporters.replacing()) return;
    try {
      // Exporters note the checkpoint in the same transaction (IPFIX saves its open usage
      // window; Diameter clears the counts it would otherwise discount from the deltas
      // handed over again after a crash): a kill between two separate commits
      // under-counted or doubled an interval.
      const committed: (() => void)[] = [];
      accounting.persist(bootId, () => {
        for (const e of exporters.list()) {
          const then = e.checkpointed?.();
          if (then) committed.push(then);
        }
      });
      for (const then of committed) then();
      lastFlushAt = Date.now();
      if (flushError !== undefined) logger.info({ path: ledger.path }, 'ledger writes work again');
      flushError = undefined;
    } catch (err) {
      const msg = (err as Error).message;
      if (flushError !== msg) logger.error({ err, path: ledger.path }, 'ledger flush failed; usage is kept in memory and retried');
      flushError = msg;
    }
  };

  const rollUp = () => {
    try {
      ledger.rollUp(Date.now(), retentionOf(config()));
    } catch (err) {
      logger.error({ err }, 'ledger roll-up failed; will retry in an hour');
    }
  };

  return { poll, flush, rollUp, healthy, health, statusLine, times: () => ({ lastPollAt, lastFlushAt }), lastFlushError: () => flushError };
}
