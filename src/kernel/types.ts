// The typed face of the kernel meter: what src/kernel/ hands to the rest of the agent.
// Every counter here is monotonic as the kernel keeps it (never read-then-cleared);
// consumers compute deltas. Counts fit exactly in a JS number up to 2^53 (8 PiB).

import type { Scope, TrafficCounters } from '../core/counters.js';

// the counting vocabulary is the ground floor's (core/counters.ts)
export type { Scope, TrafficCounters };

export interface UserCounters extends TrafficCounters {
  uid: number;
  scope: Scope;
}

export interface ProcessCounters extends TrafficCounters {
  uid: number;
  /** process id (thread-group id); 0 when the socket predates the agent and its owner is unknown */
  pid: number;
  comm: string;
  scope: Scope;
  /** the owner's cgroup v2 id when the counts were folded (a process moved to another
   *  cgroup gets a second entry from its next fold on); 0 when unknown. A number (the
   *  agent keys 10,000s of rows by it each poll; kernfs ids count up from 1 and stay far
   *  below 2^53), where flows carry the same id as a bigint */
  cgroupId: number;
}

export interface FlowRecord extends TrafficCounters {
  /** kernel socket cookie, unique for the boot: the flow's identity */
  cookie: bigint;
  family: 4 | 6;
  /** IP protocol number: 6 TCP, 17 UDP, … */
  protocol: number;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  uid: number;
  gid: number;
  pid: number;
  comm: string;
  cgroupId: bigint;
  scope: Scope;
  /** wall-clock milliseconds since the epoch of the first and last packet or I/O */
  firstSeenMs: number;
  lastSeenMs: number;
}

export interface FlowEnded {
  kind: 'flowEnded';
  flow: FlowRecord;
}

export interface ProcessExited {
  kind: 'processExited';
  pid: number;
  exitedMs: number;
}

export type MeterEvent = FlowEnded | ProcessExited;

/** Wire figures only (L3 bytes and packets, no payload): what tc sees on an interface,
 *  in total, attributed to a socket's owner, or unattributed (kernel-generated replies,
 *  time-wait ACKs, packets for no socket). */
export interface WireCounters {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

export interface InterfaceCounters {
  ifindex: number;
  name: string;
  /** what tc (clsact) saw on the interface: IP packets only, L3 bytes */
  total: WireCounters;
  /** of that, what was attributed to a local socket's owner */
  attributed: WireCounters;
  /** of that, what had no local socket */
  unattributed: WireCounters;
}

export interface MeterHealth {
  /** inserts refused because a map was full, per map */
  overflows: { users: number; processes: number; flows: number; interfaces: number };
  /** ring-buffer events that did not fit; their data stays in the maps for the sweep */
  eventsDropped: number;
  /** what users who found no free slot in the user table did (their wire bytes and
   *  packets are in the unattributed figures too; their payload only here) */
  beyondUserTable: TrafficCounters;
}

/** A kernel hook: whether this kernel has it, whether the meter uses it now, and what it
 *  gives (or what lacking it costs). */
export interface HookStatus {
  name: string;
  available: boolean;
  active: boolean;
  detail: string;
}

/** default: TCP payload from the socket's own counters at the fold, a shared socket's
 *  bytes to one holder per fold; precise (Linux 6.3+): every send/recv call's payload for
 *  the process making it. */
export type MeterMode = 'default' | 'precise';

export interface MeterStatus {
  kernelRelease: string;
  /** the mode in use (a precise request on a kernel without the tracepoints runs default) */
  mode: MeterMode;
  hooks: HookStatus[];
  pinDir: string;
  /** true when this meter re-used pinned state left by an earlier agent */
  resumed: boolean;
  /** size of the flow table in use: a resumed meter keeps the pinned table's */
  flowCapacity: number;
}
