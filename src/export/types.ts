// The contract between the agent and its exporters (ipfix, diameter, otlp, prometheus).
// The agent polls the meter, computes deltas, and hands each exporter the same facts;
// each exporter keeps its own queue/spool and retry so that none can stall another.
import type { FlowRecord, MeterHealth, TrafficCounters, WireCounters } from '../kernel/types.js';
import type { Workload, WorkloadUsage } from '../core/workload.js';

export type { Workload, WorkloadUsage };

/** One user's traffic over one poll interval (deltas), scope already filtered by config. */
export interface UserUsage extends TrafficCounters {
  uid: number;
  /** NSS name, or the uid as a string when it has none */
  user: string;
}

export interface UsageInterval {
  startMs: number;
  endMs: number;
  /** users with traffic in the interval (non-zero deltas only) */
  users: UserUsage[];
  /** the same traffic per (user, workload), non-zero deltas only. A user's delta is
   *  booked over workloads in its poll or the next (src/agent/workloads.ts): summed over
   *  intervals, each user's rows equal its `users` rows exactly, while one interval's may
   *  hold more or less. The agent always fills it; optional so that exporters' tests may
   *  leave it out */
  workloads?: WorkloadUsage[];
  /** workloads with traffic earlier whose cgroup went away since the previous interval
   *  (a job, unit or container ended): their last traffic is in this interval or before */
  endedWorkloads?: Workload[];
}

/** A flow with its owner's name resolved; counters are cumulative since the flow began. */
export interface FlowSnapshot extends FlowRecord {
  user: string;
  /** the owner's cgroup named by the units rules (systemd unit, Slurm job, container);
   *  the agent always fills it (optional for exporters' tests) */
  workload?: Workload;
}

export interface ExporterStatus {
  name: string;
  /** ok: delivering; degraded: retrying/spooling; down: not delivering */
  state: 'ok' | 'degraded' | 'down';
  detail: string;
  /** records waiting (in memory or spooled) */
  queued: number;
  /** records given up on (e.g. spool full, permanent failures) */
  dropped: number;
  /** the peers an exporter talks to (Diameter: its AAA servers, primary first) */
  peers?: ExporterPeer[];
  /** free-form per-exporter figures shown by `ubia status --json` */
  extra?: Record<string, unknown>;
}

export interface ExporterPeer {
  name: string;
  /** the exporter's word for the connection's state ("open" when delivering) */
  state: string;
  remoteHost?: string;
  inFlight?: number;
  lastError?: string;
}

export interface Exporter {
  readonly name: string;
  /** per-user (and per-workload) deltas for one poll interval: called when users moved,
   *  workloads were booked or ended (then `users` may be empty) */
  usage(interval: UsageInterval): void;
  /** every active flow at a poll, cumulative counters (exporters do their own active
   *  timeout); an exporter without it spares the agent reading the flow table */
  activeFlows?(flows: FlowSnapshot[], nowMs: number): void;
  /** a flow closed; counters are its final cumulative values */
  flowEnded(flow: FlowSnapshot): void;
  status(): ExporterStatus;
  /** The agent saved its checkpoint: after a crash it resumes from here, so the usage
   *  intervals handed over so far will not be handed over again (those since the previous
   *  checkpoint would be). For exporters that keep running totals in the ledger database:
   *  it runs inside the transaction that saves the checkpoint, so both are saved or
   *  neither; a throw fails (and retries) the whole flush. What it returns runs once the
   *  transaction committed (memory that must follow the database, not run ahead of it). */
  checkpointed?(): (() => void) | void;
  /** flush what can be flushed and release sockets/timers; called at shutdown */
  close(): Promise<void>;
}

/** ubia's own health as the agent sees it (OTLP and Prometheus publish it). */
export interface AgentHealth {
  /** cumulative since the meter was loaded, summed over interfaces */
  unattributed: WireCounters;
  /** the meter's cumulative map overflows and dropped ring-buffer events */
  meter: MeterHealth;
  /** wall-clock seconds the last poll of the kernel counters took */
  lastPollSeconds: number;
  /** when the last poll succeeded (ms since the epoch); undefined before the first one */
  lastPollAtMs: number | undefined;
  /** every exporter's status (queue depth, drops, state) */
  exporters: ExporterStatus[];
  /** Diameter peers and the state of their connection ('open', 'suspect', 'closed', …) */
  diameterPeers: Array<{ peer: string; state: string }>;
}

/** Called at collection time (an export, a scrape), never per poll. */
export type HealthSource = () => AgentHealth | undefined;

/** A user's quota in the current period: bytes counted against it, and the limit (grants included). */
export interface QuotaGauge {
  uid: number;
  user: string;
  usedBytes: number;
  limitBytes: number;
}

/** A process's traffic as the kernel counts it since the process was first seen. */
export interface ProcessUsage extends TrafficCounters {
  pid: number;
  uid: number;
  user: string;
  comm: string;
  /** wire bytes per second between the last two reads of the process table */
  rxRate: number;
  txRate: number;
}
