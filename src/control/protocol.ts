// The control API's wire format: one JSON object per line each way over the unix socket
// (/run/ubia/control.sock). Every request may carry an "id" that the reply echoes.
// Replies: {"id", "ok": true, "result": …} or {"id", "ok": false, "error": {"code", "message"}}.
// docs/cli.md documents each op and its result.
import { z } from 'zod';
import type { ExporterStatus } from '../export/types.js';
import type { Role } from './scope.js';
import type { FlowRecord, HookStatus, InterfaceCounters, MeterHealth, TrafficCounters } from '../kernel/types.js';

const id = z.union([z.string().max(128), z.number()]).optional();
const userFilter = z.string().min(1).max(64).optional().describe('user name or uid');

export const requestSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('users'), id, from: z.number().int().min(0), to: z.number().int().min(0) }),
  z.strictObject({ op: z.literal('procs'), id, user: userFilter }),
  z.strictObject({ op: z.literal('flows'), id, user: userFilter }),
  z.strictObject({ op: z.literal('top'), id, processes: z.number().int().min(0).max(100).default(5) }),
  z.strictObject({ op: z.literal('status'), id }),
]);

export type Request = z.infer<typeof requestSchema>;
export type RequestInput = z.input<typeof requestSchema>;

export type ErrorCode = 'bad_json' | 'bad_request' | 'too_large' | 'forbidden' | 'no_such_user' | 'busy' | 'internal';

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

export interface UsersResult {
  from: string;
  to: string;
  users: UserTotals[];
  /** traffic without a local socket owner; null for callers who see only their own usage */
  unattributed: Omit<TrafficCounters, 'rxPayloadBytes' | 'txPayloadBytes'> | null;
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
 *  and times, its owner's name, and without what only exporters use (gid, cgroup). */
export type FlowRow = Omit<FlowRecord, 'cookie' | 'gid' | 'cgroupId' | 'firstSeenMs' | 'lastSeenMs'> & {
  /** the socket cookie (a 64-bit integer) in decimal */
  cookie: string;
  user: string;
  firstSeen: string;
  lastSeen: string;
};

export interface FlowsResult {
  active: FlowRow[];
  ended: FlowRow[];
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
}

export interface TopResult {
  at: string;
  dayStart: string;
  pollIntervalSeconds: number;
  users: TopUser[];
}

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
    pinDir: string;
    resumed: boolean;
    health: MeterHealth;
    interfaces: InterfaceCounters[];
  };
  ledger: { path: string; sizeBytes: number; lastFlushAt: string | null; lastError: string | null };
  exporters: ExporterStatus[];
}
