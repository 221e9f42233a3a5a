// The contract between the agent and its exporters (ipfix, diameter, otlp). The agent
// polls the meter, computes deltas, and hands each exporter the same facts; each
// exporter keeps its own queue/spool and retry so that none can stall another.
import type { FlowRecord, TrafficCounters } from '../kernel/types.js';

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
}

/** A flow with its owner's name resolved; counters are cumulative since the flow began. */
export interface FlowSnapshot extends FlowRecord {
  user: string;
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
  /** free-form per-exporter figures shown by `ubia status --json` */
  extra?: Record<string, unknown>;
}

export interface Exporter {
  readonly name: string;
  /** per-user deltas for one poll interval */
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
