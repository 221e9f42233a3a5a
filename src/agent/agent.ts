// The agent: one event loop that polls the meter, books deltas in the ledger, feeds the
// exporters, serves the control socket, and handles SIGHUP reloads and orderly shutdown.
// This file wires the parts in their start order and stops them in the reverse; each
// part is its own module: poll-loop.ts (the work), scheduler.ts (when, and the watchdog),
// reload.ts (SIGHUP), exporter-set.ts (the exporters' lifecycle), control-state.ts (what
// the control socket sees).
// Kernel, NSS, exporter construction and the control socket's server come in through
// AgentDeps (wired by the `ubia agent` command, cli/agent.ts: the agent does not import
// the control layer above it).
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Exporter } from '../export/types.js';
import type { UbiaConfig } from '../config/config.js';
import type { RoleConfig } from '../config/schema.js';
import type { FlowStore } from '../history/store.js';
import { Ledger } from '../ledger/ledger.js';
import type { MeterMode } from '../kernel/types.js';
import type { Pseudonyms } from '../privacy/pseudonyms.js';
import { Accounting } from './accounting.js';
import { cgroup2Mount, cgroupExists, createCgroupPaths } from '../kernel/cgroups.js';
import { DEFAULT_WORKLOAD_RULES, workloadNamer, type Workload } from '../core/workload.js';
import { decodeCheckpoint } from './checkpoint.js';
import { createControlState } from './control-state.js';
import { createExporterSet } from './exporter-set.js';
import { openFlowHistory } from './flow-history.js';
import type { ExporterContext } from './exporters.js';
import type { MeterReader } from './meter.js';
import { createNameCache, type NameCache, type UserNameLookup } from './names.js';
import { createPollLoop, retentionOf } from './poll-loop.js';
import { createReloader } from './reload.js';
import { createScheduler } from './scheduler.js';
import type { QuotaEnforcer } from '../kernel/quota.js';
import type { QuotaEngine } from './quota/engine.js';
import { startQuotas } from './quota/index.js';
import type { ControlLimits } from '../core/control-limits.js';

/** What the agent shows of itself to its control socket. */
export interface AgentState {
  accounting: Accounting;
  ledger: Ledger;
  /** the flow store; undefined when [history] is off or it did not open */
  history: FlowStore | undefined;
  meter: MeterReader;
  names: NameCache;
  quotas: QuotaEngine;
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

/** The control socket's server, as the agent drives it. */
export interface ControlService {
  setLimits(limits: ControlLimits): void;
  close(): Promise<void>;
}

export interface AgentDeps {
  openMeter(opts: { pinDir: string; flowCapacity: number; userCapacity: number; peersPerSocket: number; mode: MeterMode }): MeterReader;
  /** the kernel's quota enforcement (block, throttle) beside the meter's pins; absent: quotas only alert */
  openQuotaEnforcer?(opts: { pinDir: string }): QuotaEnforcer;
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

export function readBootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

const controlLimits = (c: UbiaConfig): ControlLimits => ({
  maxRequestBytes: c.control.max_request_bytes,
  maxClients: c.control.max_clients,
  maxClientsPerUser: c.control.max_clients_per_user,
  adminReservedClients: c.control.admin_reserved_clients,
  requestTimeoutMs: c.control.request_timeout * 1000,
  maxReplyBufferBytes: c.control.max_reply_buffer_bytes,
  userTimeBudgetMs: c.control.user_time_budget,
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

  const meter = deps.openMeter({
    pinDir: config.agent.pin_dir,
    flowCapacity: config.agent.flow_capacity,
    userCapacity: config.agent.user_capacity,
    peersPerSocket: config.agent.unconnected_peers,
    mode: config.agent.meter_mode,
  });
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
  const history = await openFlowHistory(config, logger);
  const names = createNameCache(deps.userName, config.agent.name_cache_ttl * 1000);
  const exporters = createExporterSet(logger);
  const cgroupRoot = cgroup2Mount();
  // rescanMs 0: a cgroup id is named when first seen, however soon after another (its
  // cgroup may be gone by the next walk); ids a walk cannot name are not walked for again
  const cgroups = { pathOf: createCgroupPaths({ root: cgroupRoot, logger, rescanMs: 0 }), exists: (id: bigint, path: string) => cgroupExists(cgroupRoot, id, path) };
  const workloadNamers = new WeakMap<UbiaConfig, (cgroupPath: string) => Workload>();
  const workloadOf = (c: UbiaConfig) => {
    let namer = workloadNamers.get(c);
    if (!namer) {
      namer = workloadNamer([...(c.units.rule ?? []), ...(c.units.default_rules ? DEFAULT_WORKLOAD_RULES : [])]);
      workloadNamers.set(c, namer);
    }
    return namer;
  };
  const accountingOptions = (c: UbiaConfig) => ({
    countLoopback: c.agent.count_loopback,
    recentFlows: c.agent.recent_flows,
    flowIntervalMs: c.agent.flow_interval * 1000,
    flowsWanted: exporters.list().some((e) => e.activeFlows),
    workloadOf: workloadOf(c),
  });
  const accounting = new Accounting(meter, ledger, decodeCheckpoint(loaded.checkpoint), names, accountingOptions(config), cgroups);
  const quotas = startQuotas({
    ledger,
    who: { name: (uid) => names.name(uid), primaryGroup: deps.primaryGroup, group: deps.groupMembers, uidOf: (name) => deps.userByName(name)?.uid },
    openEnforcer: deps.openQuotaEnforcer && (() => deps.openQuotaEnforcer!({ pinDir: st.pinDir })),
    logger,
  });
  // before the first poll: the usage it books (what happened while the agent was stopped) counts
  quotas.apply(config, Date.now());
  accounting.onBooked(quotas.engine.booked);
  const loop = createPollLoop({ meter, pinDir: st.pinDir, accounting, ledger, exporters, quotas: quotas.engine, logger, bootId, config: () => config, sdNotify: deps.sdNotify });
  const exporterContext = (): ExporterContext => ({
    logger,
    ledger,
    hostName: deps.hostName,
    stateDir: dirname(config.ledger.path),
    health: loop.health,
    version: deps.version,
    history,
    userName: (uid) => names.name(uid),
    counts: (scope) => accounting.counts(scope),
    processes: () => accounting.processList(),
    interfaces: () => meter.readInterfaces(),
    quotas: quotas.gauges,
  });
  await exporters.start(() => deps.createExporters(config, exporterContext()));
  accounting.setOptions(accountingOptions(config));

  meter.onEvent((ev) => {
    if (ev.kind === 'processExited') return accounting.processExited(ev.pid);
    const snap = accounting.flowEnded(ev.flow);
    if (accounting.counts(ev.flow.scope)) exporters.each('flowEnded', (e) => e.flowEnded(snap));
  });

  const server = await deps.serveControl(createControlState({ accounting, ledger, history, meter, names, quotas: quotas.engine, exporters, loop, configFile, config: () => config, startedAt }, deps), {
    path: config.control.socket,
    ...controlLimits(config),
    logger,
  });

  const scheduler = createScheduler({ loop, config: () => config, sdNotify: deps.sdNotify, env: process.env });
  loop.poll();
  loop.flush();
  scheduler.schedule();
  deps.sdNotify(`READY=1\nSTATUS=${loop.statusLine()}`);
  logger.info({ config: configFile ?? '(built-in defaults)', ledger: ledger.path, socket: config.control.socket, exporters: exporters.list().map((e) => e.name) }, 'agent started');

  let stopping: Promise<void> | undefined;
  const reloader = createReloader({
    configFile,
    logger,
    current: () => config,
    stopping: () => stopping !== undefined,
    sdNotify: deps.sdNotify,
    apply: async (next, exportersChanged) => {
      config = next;
      logger.level = config.log.level;
      names.setTtl(config.agent.name_cache_ttl * 1000);
      accounting.setOptions(accountingOptions(config));
      quotas.apply(config, Date.now());
      server.setLimits(controlLimits(config));
      scheduler.schedule();
      if (exportersChanged) {
        // a checkpoint first, as at shutdown: what the closing exporters send (IPFIX's open
        // usage window) is then never handed to an exporter again after a crash
        loop.flush();
        await exporters.replace(() => deps.createExporters(config, exporterContext()));
        accounting.setOptions(accountingOptions(config));
        // the new exporters have the polls held while they started: confirm them (a stop
        // waits for this reload, so its own flush skipped while replacing is made good here)
        loop.flush();
      }
    },
  });

  // Stopping releases in the reverse order of the start, once however often it is asked.
  const stop = (reason: string) => {
    stopping ??= (async () => {
      deps.sdNotify('STOPPING=1');
      logger.info({ reason }, 'agent stopping');
      scheduler.stop();
      loop.poll();
      loop.flush();
      await server.close();
      // a reload under way finishes first: else it would start exporters nobody closes
      await reloader.settled();
      await exporters.close();
      // after the exporters: the flow recorder among them writes its last flows into it
      history?.close();
      quotas.close();
      meter.close();
      ledger.close();
      logger.info('agent stopped; the kernel keeps counting until the next start');
    })();
    return stopping;
  };

  return { stop, reload: reloader.reload };
}
