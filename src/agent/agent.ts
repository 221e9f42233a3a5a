// The agent: one event loop that polls the meter, books deltas in the ledger, feeds the
// exporters, serves the control socket, and handles SIGHUP reloads and orderly shutdown.
// Kernel, NSS, exporter construction and the control socket's server come in through
// AgentDeps (wired by the `ubia agent` command, cli/agent.ts: the agent does not import
// the control layer above it).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { AgentHealth, Exporter } from '../export/types.js';
import { humanRate } from '../core/units.js';
import { loadConfig } from '../config/load.js';
import type { UbiaConfig } from '../config/config.js';
import { DAY_MS, HOUR_MS, Ledger } from '../ledger/ledger.js';
import type { MeterMode } from '../kernel/types.js';
import { Accounting } from './accounting.js';
import { decodeCheckpoint } from './checkpoint.js';
import type { MeterReader } from './meter.js';
import { createNameCache, type NameCache, type UserNameLookup } from './names.js';
import type { RoleConfig } from '../config/schema.js';
import { createPseudonyms, type Pseudonyms } from '../privacy/pseudonyms.js';
import { readOrCreateSecret } from '../privacy/secret.js';
import type { ExporterContext } from './exporters.js';

/** What the agent shows of itself to its control socket. */
export interface AgentState {
  accounting: Accounting;
  ledger: Ledger;
  meter: MeterReader;
  names: NameCache;
  configFile: string | undefined;
  pollIntervalSeconds(): number;
  countLoopback(): boolean;
  exporters(): ReturnType<Exporter['status']>[];
  /** who may see what, as configured (control.admin_group, [[control.roles]]): control/scope.ts
   *  decides each caller's view from it; the auditor's pseudonyms read their secret on first use */
  access(): { adminGroup: string; roles: readonly RoleConfig[]; pseudonyms(): Pseudonyms };
  /** the NSS look-ups the roles and `-u NAME` need (names cached) */
  directory: Pick<AgentDeps, 'userByName' | 'primaryGroup'> & { name(uid: number): string; group: AgentDeps['groupMembers'] };
  /** times in ms since the epoch */
  times(): { startedAt: number; lastPollAt?: number; lastFlushAt?: number };
  lastFlushError(): string | undefined;
}

export interface ControlLimits {
  maxRequestBytes: number;
  maxClients: number;
}

/** The control socket's server, as the agent drives it. */
export interface ControlService {
  setLimits(limits: ControlLimits): void;
  close(): Promise<void>;
}

export interface AgentDeps {
  openMeter(opts: { pinDir: string; flowCapacity: number; userCapacity: number; mode: MeterMode }): MeterReader;
  userName: UserNameLookup;
  groupMembers(name: string): { gid: number; members: string[] } | undefined;
  userByName(name: string): { uid: number; gid: number } | undefined;
  primaryGroup(uid: number): number | undefined;
  /** serves the control socket at `path` over the agent's state */
  serveControl(state: AgentState, opts: ControlLimits & { path: string; logger: Logger }): Promise<ControlService>;
  sdNotify(state: string): boolean;
  /** one Exporter per configured exporter section of `config` */
  createExporters(config: UbiaConfig, ctx: ExporterContext): Promise<Exporter[]>;
  hostName: string;
  version: string;
}

export interface RunningAgent {
  /** flush and release everything; resolves when done (idempotent) */
  stop(reason: string): Promise<void>;
  /** re-reads the config file; keeps the running one when the new one is bad */
  reload(): Promise<void>;
}

/** Exporter sections whose change means closing and re-creating the exporters. */
const exporterSections = (c: UbiaConfig) => JSON.stringify([c.ipfix, c.diameter, c.otlp, c.prometheus]);

const RESTART_ONLY: [string, (c: UbiaConfig) => unknown][] = [
  ['ledger.path', (c) => c.ledger.path],
  ['control.socket', (c) => c.control.socket],
  ['agent.pin_dir', (c) => c.agent.pin_dir],
  ['agent.flow_capacity', (c) => c.agent.flow_capacity],
  ['agent.user_capacity', (c) => c.agent.user_capacity],
];

export function readBootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

const retentionOf = (c: UbiaConfig) => ({
  minuteMs: c.ledger.minute_retention_days * DAY_MS,
  hourMs: c.ledger.hour_retention_days * DAY_MS,
  dayMs: c.ledger.day_retention_days * DAY_MS,
});

export async function startAgent(
  initial: { config: UbiaConfig; file: string | undefined },
  logger: Logger,
  deps: AgentDeps,
): Promise<RunningAgent> {
  let config = initial.config;
  const configFile = initial.file;
  const startedAt = Date.now();
  const bootId = readBootId();

  const meter = deps.openMeter({ pinDir: config.agent.pin_dir, flowCapacity: config.agent.flow_capacity, userCapacity: config.agent.user_capacity, mode: config.agent.meter_mode });
  const st = meter.status();
  logger.info({ mode: st.mode, kernel: st.kernelRelease, resumed: st.resumed, hooks: st.hooks.filter((h) => h.active).map((h) => h.name) }, 'meter open');
  if (st.flowCapacity !== config.agent.flow_capacity) {
    // the flow table is in use by the attached programs: a new size means a new meter
    logger.warn(
      { configured: config.agent.flow_capacity, inUse: st.flowCapacity, pinDir: st.pinDir },
      'agent.flow_capacity is not applied: the running meter keeps its pinned flow table; to resize, stop the agent, run `ubia detach` (active flows are lost) and start it again',
    );
  }

  const ledger = new Ledger(config.ledger.path);
  const loaded = ledger.loadCheckpoint(bootId);
  if (loaded.rebooted) logger.info('new boot since the last run: kernel counters restarted from zero, counting them all as new');
  ledger.rollUp(Date.now(), retentionOf(config));
  const names = createNameCache(deps.userName, config.agent.name_cache_ttl * 1000);
  let exporters: Exporter[] = [];
  const accountingOptions = (c: UbiaConfig) => ({
    countLoopback: c.agent.count_loopback,
    recentFlows: c.agent.recent_flows,
    flowIntervalMs: c.agent.flow_interval * 1000,
    flowsWanted: exporters.some((e) => e.activeFlows),
  });
  const accounting = new Accounting(meter, ledger, decodeCheckpoint(loaded.checkpoint), names, accountingOptions(config));
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
    const statuses = exporters.map((e) => e.status());
    const peers = statuses.flatMap((s) => (s.peers ?? []).map((p) => ({ peer: p.name, state: p.state })));
    return { unattributed, meter: meter.health(), lastPollSeconds, lastPollAtMs: lastPollAt, exporters: statuses, diameterPeers: peers };
  };
  const exporterContext = (): ExporterContext => ({
    logger,
    ledger,
    hostName: deps.hostName,
    stateDir: dirname(config.ledger.path),
    health,
    version: deps.version,
    userName: (uid) => names.name(uid),
    counts: (scope) => accounting.counts(scope),
    processes: () => accounting.processList(),
    interfaces: () => meter.readInterfaces(),
  });
  exporters = await deps.createExporters(config, exporterContext());
  accounting.setOptions(accountingOptions(config));
  const failing = new Set<string>();

  /** Runs one exporter call; a throwing exporter is logged once, never stops the others. */
  const toExporters = (what: string, call: (e: Exporter) => void) => {
    for (const e of exporters) {
      try {
        call(e);
        if (failing.delete(e.name)) logger.info({ exporter: e.name }, 'exporter accepts data again');
      } catch (err) {
        if (!failing.has(e.name)) logger.error({ exporter: e.name, err, call: what }, 'exporter failed; its data for this poll is lost to it');
        failing.add(e.name);
      }
    }
  };

  meter.onEvent((ev) => {
    if (ev.kind === 'processExited') return accounting.processExited(ev.pid);
    const snap = accounting.flowEnded(ev.flow);
    if (accounting.counts(ev.flow.scope)) toExporters('flowEnded', (e) => e.flowEnded(snap));
  });

  let lastFlushAt: number | undefined;
  let flushError: string | undefined;
  let pollError: string | undefined;

  let pinsError: string | undefined;
  /** Someone removed the pin directory (or pins in it): the programs still count, as we
   *  hold them, but a restart would find nothing. Put the pins back. */
  const keepPinned = () => {
    try {
      const lost = meter.checkPins();
      if (lost.length) logger.warn({ pinDir: st.pinDir, lost: lost.length, example: lost[0] }, 'pins were removed while the agent ran: pinned again (counting never stopped)');
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
      const interval = exporters.length ? usage() : undefined;
      if (interval?.users.length) toExporters('usage', (e) => e.usage(interval));
      if (flows && exporters.length) {
        const list = flows();
        toExporters('activeFlows', (e) => e.activeFlows?.(list, now));
      }
    } catch (err) {
      const msg = (err as Error).message;
      if (pollError !== msg) logger.error({ err }, 'reading the meter failed; retrying every poll');
      pollError = msg;
    }
  };

  // Healthy = the last poll succeeded within two intervals: a poll loop that stops (or
  // keeps failing) stops the watchdog pings, and systemd restarts us.
  const pollHealthy = (now: number) => lastPollAt !== undefined && now - lastPollAt <= 2 * config.agent.poll_interval * 1000 + 1000;
  const statusLine = () => {
    let rx = 0;
    let tx = 0;
    for (const r of accounting.rates().values()) {
      rx += r.rxRate;
      tx += r.txRate;
    }
    const unhealthy = exporters.map((e) => e.status()).filter((s) => s.state !== 'ok');
    return [
      `${accounting.rates().size} users active, in ${humanRate(rx)}, out ${humanRate(tx)}`,
      `${accounting.activeFlowCount()} flows`,
      unhealthy.length ? unhealthy.map((s) => `${s.name} ${s.state}`).join(', ') : exporters.length ? 'exporters ok' : 'no exporters',
      ...(pollError ? ['meter reads failing'] : []),
      ...(flushError ? ['ledger writes failing'] : []),
    ].join('; ');
  };

  const flush = () => {
    deps.sdNotify(`STATUS=${statusLine()}`);
    try {
      // Exporters note the checkpoint in the same transaction (Diameter clears the counts
      // it would otherwise discount from the deltas handed over again after a crash): a
      // kill between two separate commits under-counted or doubled an interval.
      const committed: (() => void)[] = [];
      accounting.persist(bootId, () => {
        for (const e of exporters) {
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

  const directory: AgentState['directory'] = {
    name: (uid) => names.name(uid),
    userByName: deps.userByName,
    primaryGroup: deps.primaryGroup,
    group: deps.groupMembers,
  };
  // the auditor's secret is read (or created) when an auditor first asks, and again when
  // a reload names another file
  let auditor: { file: string; pseudonyms: Pseudonyms } | undefined;
  const pseudonyms = () => {
    const file = config.control.auditor_key_file || join(dirname(config.ledger.path), 'auditor.key');
    if (auditor?.file !== file) auditor = { file, pseudonyms: createPseudonyms(readOrCreateSecret(file)) };
    return auditor.pseudonyms;
  };

  const server = await deps.serveControl(
    {
      accounting,
      ledger,
      meter,
      names,
      configFile,
      pollIntervalSeconds: () => config.agent.poll_interval,
      countLoopback: () => config.agent.count_loopback,
      exporters: () => exporters.map((e) => e.status()),
      access: () => ({ adminGroup: config.control.admin_group, roles: config.control.roles ?? [], pseudonyms }),
      directory,
      times: () => ({ startedAt, lastPollAt, lastFlushAt }),
      lastFlushError: () => flushError,
    },
    { path: config.control.socket, maxRequestBytes: config.control.max_request_bytes, maxClients: config.control.max_clients, logger },
  );

  const timers = {
    poll: undefined as NodeJS.Timeout | undefined,
    flush: undefined as NodeJS.Timeout | undefined,
    rollUp: undefined as NodeJS.Timeout | undefined,
    watchdog: undefined as NodeJS.Timeout | undefined,
  };
  // Pings follow the manager's interval, not the poll timer (poll_interval may exceed
  // WatchdogSec); half of it, as sd_watchdog_enabled(3) advises.
  const watchdogMs = watchdogIntervalMs(process.env);
  if (watchdogMs !== undefined) {
    timers.watchdog = setInterval(() => {
      if (pollHealthy(Date.now())) deps.sdNotify('WATCHDOG=1');
    }, watchdogMs / 2);
  }
  const schedule = () => {
    clearInterval(timers.poll);
    clearInterval(timers.flush);
    clearInterval(timers.rollUp);
    timers.poll = setInterval(poll, config.agent.poll_interval * 1000);
    timers.flush = setInterval(flush, config.ledger.flush_interval * 1000);
    timers.rollUp = setInterval(() => {
      try {
        ledger.rollUp(Date.now(), retentionOf(config));
      } catch (err) {
        logger.error({ err }, 'ledger roll-up failed; will retry in an hour');
      }
    }, HOUR_MS);
  };
  poll();
  flush();
  schedule();
  deps.sdNotify(`READY=1\nSTATUS=${statusLine()}`);
  logger.info({ config: configFile ?? '(built-in defaults)', ledger: ledger.path, socket: config.control.socket, exporters: exporters.map((e) => e.name) }, 'agent started');

  let stopping: Promise<void> | undefined;
  const stop = (reason: string) => {
    stopping ??= (async () => {
      deps.sdNotify('STOPPING=1');
      logger.info({ reason }, 'agent stopping');
      clearInterval(timers.poll);
      clearInterval(timers.flush);
      clearInterval(timers.rollUp);
      clearInterval(timers.watchdog);
      poll();
      flush();
      await server.close();
      // a reload under way finishes first: else it would start exporters nobody closes
      await reloads;
      await closeExporters(exporters, logger);
      meter.close();
      ledger.close();
      logger.info('agent stopped; the kernel keeps counting until the next start');
    })();
    return stopping;
  };

  const applyReload = async () => {
    let next: UbiaConfig;
    try {
      next = loadConfig(configFile).config;
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'SIGHUP: the new configuration is invalid; keeping the running one');
      return;
    }
    for (const [key, get] of RESTART_ONLY) {
      if (JSON.stringify(get(next)) !== JSON.stringify(get(config))) logger.warn({ key }, 'SIGHUP: this key only takes effect after a restart');
    }
    const exportersChanged = exporterSections(next) !== exporterSections(config);
    const old = config;
    config = { ...next, ledger: { ...next.ledger, path: old.ledger.path }, control: { ...next.control, socket: old.control.socket }, agent: { ...next.agent, pin_dir: old.agent.pin_dir, flow_capacity: old.agent.flow_capacity, user_capacity: old.agent.user_capacity } };
    logger.level = config.log.level;
    names.setTtl(config.agent.name_cache_ttl * 1000);
    accounting.setOptions(accountingOptions(config));
    server.setLimits({ maxRequestBytes: config.control.max_request_bytes, maxClients: config.control.max_clients });
    schedule();
    if (exportersChanged) {
      await closeExporters(exporters, logger);
      try {
        exporters = await deps.createExporters(config, exporterContext());
      } catch (err) {
        exporters = [];
        logger.error({ err }, 'SIGHUP: could not start the exporters of the new configuration; exporting nothing until fixed');
      }
      accounting.setOptions(accountingOptions(config));
    }
    logger.info({ exportersRestarted: exportersChanged }, 'configuration reloaded');
    deps.sdNotify('READY=1');
  };

  // Reloads run one after the other, never interleaved (two would each close the same
  // exporters and each start new ones, leaving one set running unowned). SIGHUPs that
  // arrive while one is waiting to run fold into it: it reads the file as it is then.
  let reloads: Promise<void> = Promise.resolve();
  let reloadWaiting = false;
  const reload = () => {
    if (reloadWaiting) return reloads;
    reloadWaiting = true;
    reloads = reloads.then(async () => {
      reloadWaiting = false;
      if (stopping) return;
      await applyReload().catch((err: unknown) => logger.error({ err }, 'SIGHUP: the reload failed; the running configuration may be partly applied'));
    });
    return reloads;
  };

  return { stop, reload };
}

/** sd_watchdog_enabled(3): $WATCHDOG_USEC, for us unless $WATCHDOG_PID names another process. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== process.pid) return undefined;
  return usec / 1000;
}

/** Gives every exporter up to 1.5 s to flush, together, so shutdown stays within ~2 s. */
async function closeExporters(exporters: Exporter[], logger: Logger): Promise<void> {
  await Promise.all(
    exporters.map((e) =>
      Promise.race([
        e.close().catch((err: unknown) => logger.error({ err, exporter: e.name }, 'exporter close failed')),
        new Promise<void>((resolve) => setTimeout(resolve, 1500).unref()),
      ]),
    ),
  );
}
