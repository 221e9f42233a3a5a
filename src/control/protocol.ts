// The control API's wire format: one JSON object per line each way over the unix socket
// (/run/ubia/control.sock; /run/ubia/control.sock.admin for root and admins). Every
// request may carry an "id" that the reply echoes.
// Replies: {"id", "ok": true, "result": …} or {"id", "ok": false, "error": {"code", "message"}}.
// docs/cli.md documents each op and its result.
import { z } from 'zod';
import type { ExporterStatus } from '../export/types.js';
import type { Role } from './scope.js';
import type { FlowRecord, HookStatus, InterfaceCounters, MeterHealth, TrafficCounters } from '../kernel/types.js';
import type { WorkloadGrouping, WorkloadKind } from '../core/workload.js';

/** The admin socket beside the public one: only root and control.admin_group can open it,
 *  so no other user's connections are ever queued before theirs (control/server.ts). */
export const adminSocketOf = (socketPath: string) => `${socketPath}.admin`;

const id = z.union([z.string().max(128), z.number()]).optional();
const userFilter = z.string().min(1).max(64).optional().describe('user name or uid');
/** ECMA-262 §21.4.1.1: a Date holds at most ±8.64e15 ms; past that toISOString throws. */
export const MAX_TIME_MS = 8.64e15;
const time = z.number().int().min(0).max(MAX_TIME_MS);
/** flows per list in one `flows` reply, at most (the kernel table holds up to 4 Mi) */
export const MAX_FLOWS_LIMIT = 1_000_000;
/** rows in one `flows.query` reply, at most (the reply is built in one piece) */
export const MAX_QUERY_ROWS = 100_000;
/** periods in one `report` (a year by the hour is 8,784) */
export const MAX_REPORT_PERIODS = 20_000;
export const REPORT_BREAKDOWNS = ['user', 'time', 'process', 'remote', 'port', 'unit'] as const;
export type ReportBreakdown = (typeof REPORT_BREAKDOWNS)[number];

export const requestSchema = z.discriminatedUnion('op', [
  z
    .strictObject({ op: z.literal('users'), id, from: time, to: time })
    .refine((r) => r.to >= r.from, { message: '"to" is before "from"', path: ['to'] }),
  z
    .strictObject({
      op: z.literal('units'),
      id,
      from: time,
      to: time,
      user: userFilter,
      by: z.enum(['unit', 'job', 'container']).default('unit').describe('one row per workload, per Slurm job (its steps together) or per container'),
    })
    .refine((r) => r.to >= r.from, { message: '"to" is before "from"', path: ['to'] }),
  z.strictObject({ op: z.literal('procs'), id, user: userFilter }),
  z.strictObject({
    op: z.literal('flows'),
    id,
    user: userFilter,
    limit: z.number().int().min(1).max(MAX_FLOWS_LIMIT).optional().describe('only the flows with the most bytes, this many of each list'),
  }),
  z
    .strictObject({
      op: z.literal('flows.query'),
      id,
      user: userFilter,
      from: time,
      to: time,
      where: z.string().max(4096).optional().describe('filter: proto, host, net, port, src/dst, user, uid, pid, comm, exe, unit; and/or/not'),
      groupBy: z.string().max(1024).optional(),
      having: z.string().max(1024).optional(),
      order: z.string().max(1024).optional(),
      limit: z.number().int().min(1).max(MAX_QUERY_ROWS).default(20),
      remotes: z.boolean().optional().describe('count distinct remote addresses per group'),
    })
    .refine((r) => r.to >= r.from, { message: '"to" is before "from"', path: ['to'] }),
  z
    .strictObject({
      op: z.literal('report'),
      id,
      user: userFilter,
      from: time,
      to: time,
      by: z.enum(REPORT_BREAKDOWNS).default('user'),
      edges: z.array(time).max(MAX_REPORT_PERIODS).default([]).describe('by time: the period starts after `from`, increasing, before `to`'),
      top: z.number().int().min(1).max(MAX_QUERY_ROWS).optional().describe('rows per user kept; the rest summed into one'),
    })
    .refine((r) => r.to >= r.from, { message: '"to" is before "from"', path: ['to'] })
    .refine((r) => r.edges.every((e, i) => e > (i === 0 ? r.from : r.edges[i - 1]!) && e < r.to), {
      message: 'edges must increase strictly, after "from" and before "to"',
      path: ['edges'],
    }),
  z.strictObject({ op: z.literal('top'), id, processes: z.number().int().min(0).max(100).default(5) }),
  z.strictObject({ op: z.literal('status'), id }),
  z.strictObject({ op: z.literal('quota'), id, user: userFilter }),
  z.strictObject({
    op: z.literal('quota.grant'),
    id,
    user: z.string().min(1).max(64).describe('user name or uid'),
    bytes: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).describe('extra allowance for the current period'),
  }),
  z.strictObject({ op: z.literal('quota.reset'), id, user: z.string().min(1).max(64).describe('user name or uid') }),
]);

export type Request = z.infer<typeof requestSchema>;
export type RequestInput = z.input<typeof requestSchema>;

export type ErrorCode = 'bad_json' | 'bad_request' | 'too_large' | 'timeout' | 'forbidden' | 'no_such_user' | 'no_quota' | 'busy' | 'internal';

export interface ErrorReply {
  id?: string | number;
  ok: false;
  error: { code: ErrorCode; message: string };
}

export interface OkReply<T = unknown> {
  id?: string | number;
  ok: true;
  result: T;
}

export type Reply<T = unknown> = OkReply<T> | ErrorReply;

export interface UserTotals extends TrafficCounters {
  uid: number;
  user: string;
}

/** The range a reply's figures were summed over: the ledger sums whole buckets, so this
 *  is [from, to) widened to whole minutes, and to whole hours or days where older data is
 *  rolled up into them (Ledger.countedRange); ISO 8601 UTC like `from` and `to`. */
export interface CountedRange {
  countedFrom: string;
  countedTo: string;
}

export interface UsersResult extends CountedRange {
  /** the range asked for */
  from: string;
  to: string;
  users: UserTotals[];
  /** traffic without a local socket owner; null for callers who see only their own usage */
  unattributed: Omit<TrafficCounters, 'rxPayloadBytes' | 'txPayloadBytes'> | null;
}

/** One user's traffic in one unit (or job, or container: `by`) over the range, with the
 *  rates of the last settle. A user's rows sum exactly to the user's `users` row. */
export interface UnitRow extends TrafficCounters {
  uid: number;
  user: string;
  /** the workload's name, the job ("job_1234") or the container id, as `by` groups */
  unit: string;
  kind: WorkloadKind;
  jobId: string | null;
  containerId: string | null;
  /** the cgroup paths behind the row ("" = the owner's cgroup was not known) */
  cgroupPaths: string[];
  rxRate: number;
  txRate: number;
  rxPayloadRate: number;
  txPayloadRate: number;
}

export interface UnitsResult extends CountedRange {
  from: string;
  to: string;
  by: WorkloadGrouping;
  units: UnitRow[];
}

export interface ProcessRow extends TrafficCounters {
  uid: number;
  user: string;
  pid: number;
  comm: string;
  /** wire and payload bytes per second over the last poll */
  rxRate: number;
  txRate: number;
  rxPayloadRate: number;
  txPayloadRate: number;
}

export interface ProcsResult {
  processes: ProcessRow[];
}

/** A flow as `ubia flows --json` shows it: the kernel's record with JSON-safe identity
 *  and times, its owner's name and workload, and without what only exporters use (gid,
 *  cgroup id). */
export type FlowRow = Omit<FlowRecord, 'cookie' | 'gid' | 'cgroupId' | 'firstSeenMs' | 'lastSeenMs'> & {
  /** the flow's identity (a 64-bit integer) in decimal: its socket's cookie, or a digest of it and the peer for one peer of an unconnected socket */
  cookie: string;
  user: string;
  /** the owner's workload as `ubia units` names it */
  unit: string;
  firstSeen: string;
  lastSeen: string;
};

export interface FlowsResult {
  active: FlowRow[];
  ended: FlowRow[];
  /** flows in each list before `limit` */
  activeTotal: number;
  endedTotal: number;
}

export interface TopUser {
  uid: number;
  user: string;
  /** wire and payload bytes per second over the last poll */
  rxRate: number;
  txRate: number;
  rxPayloadRate: number;
  txPayloadRate: number;
  /** wire and payload bytes since the local start of the day */
  rxBytesToday: number;
  txBytesToday: number;
  rxPayloadBytesToday: number;
  txPayloadBytesToday: number;
  processes: ProcessRow[];
  /** the user's workloads (`by` unit): their totals since the start of the day, the
   *  rates of the last poll */
  units: UnitRow[];
}

export interface TopResult {
  at: string;
  dayStart: string;
  pollIntervalSeconds: number;
  users: TopUser[];
}

/** What a non-admin sees of `status` is the agent's health only: the fields that name
 *  files or show host-wide traffic (per-interface totals, users beyond the user table)
 *  are null for them. */
export interface StatusResult {
  agent: {
    pid: number;
    startedAt: string;
    uptimeSeconds: number;
    configFile: string | null;
    pollIntervalSeconds: number;
    countLoopback: boolean;
    lastPollAt: string | null;
    /** the caller and the role they see the agent with (control/scope.ts) */
    you: { uid: number; admin: boolean; role: Role };
  };
  meter: {
    kernelRelease: string;
    mode: string;
    hooks: HookStatus[];
    pinDir: string | null;
    resumed: boolean;
    health: Omit<MeterHealth, 'beyondUserTable'> & { beyondUserTable: MeterHealth['beyondUserTable'] | null };
    interfaces: InterfaceCounters[] | null;
  };
  ledger: { path: string | null; sizeBytes: number | null; lastFlushAt: string | null; lastError: string | null };
  exporters: ExporterStatus[];
}

/** `ubia flows --since …`: groups (keys in `keys` order, then the aggregates) or records. */
export interface FlowQueryResult {
  from: string;
  to: string;
  /** the group keys; empty when the rows are flow records */
  keys: string[];
  rows: Record<string, string | number | null>[];
}

/** One user's quota in its current period (docs/quota.md). */
export interface QuotaRow {
  uid: number;
  user: string;
  /** the [[quota]] rule that applies, by its match */
  match: string;
  period: 'day' | 'week' | 'month';
  periodStart: string;
  periodEnd: string;
  direction: 'both' | 'rx' | 'tx';
  /** the rule's action as configured: "alert", "block", "throttle:8Mbit" */
  action: string;
  /** wire bytes counted since the period's start (or the last reset) */
  usedBytes: number;
  /** the rule's limit plus what was granted for this period */
  limitBytes: number;
  grantedBytes: number;
  /** thresholds (percent) alerted this period */
  alerted: number[];
  state: 'ok' | 'warned' | 'blocked' | 'throttled';
}

export interface QuotaResult {
  quotas: QuotaRow[];
}

/** One row of a user's breakdown: its key (`start` of a period; `comm` and `exe`;
 *  `network`; `proto` and `port`; `unit`) and its counters. `note` marks the rows that make
 *  the sum exact: `other` (the rows past --top, summed), `unrecorded` (the user's total
 *  minus what the flow store holds for the range: traffic of flows whose records end
 *  outside it, or kept by no record; negative when records ending in the range began
 *  before it; by unit: what the ledger's workload buckets lack, only in a ledger older
 *  than them). */
export interface ReportRow extends TrafficCounters {
  key: Record<string, string | number | null>;
  note?: 'other' | 'unrecorded';
}

export interface ReportUser extends UserTotals {
  rows: ReportRow[];
}

export interface ReportResult extends CountedRange {
  from: string;
  to: string;
  by: ReportBreakdown;
  /** per user: the `users` totals of the same range; their rows add up to them exactly */
  users: ReportUser[];
  unattributed: UsersResult['unattributed'];
}
