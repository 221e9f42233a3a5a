// The checkpoint stored with every ledger flush: the last kernel counter values the
// booked usage was computed from, per user key and per interface. It holds every key
// (10,000s) and is rewritten at each flush, so users go in binary: 7 little-endian
// float64 per key (key, then the six counters; exact up to 2^53 like the counters
// themselves). Layout: u32 version, u32 length of a JSON part, that JSON padded to 8
// bytes, the user rows. The JSON part holds the interfaces (version 2: it is only that
// list) and, since version 3, the workload accounting's state (agent/workloads.ts): the
// process counters its deltas come from and what is not yet booked to a workload.
import { getCounters, putCounters, type TrafficCounters } from '../core/counters.js';

/** A key and its six counters, as the JSON part stores them. */
export type CounterRow<K> = [K, number, number, number, number, number, number];

/** What the workload accounting keeps between two lives of the agent. */
export interface WorkloadState {
  /** last counter values per process key (uid, pid, scope, cgroup, comm) */
  processes: CounterRow<string>[];
  /** per (uid, scope) key: user deltas not yet booked to a workload */
  owed: CounterRow<number>[];
  /** per (uid, scope, cgroup path) key: process deltas not yet booked */
  queued: CounterRow<string>[];
}

export interface Checkpoint {
  users: [number, TrafficCounters][];
  interfaces: [string, TrafficCounters][];
  /** absent in a version-2 checkpoint (an agent before workloads) */
  workloads?: WorkloadState;
}

const VERSION = 3;
const KNOWN_VERSIONS = [2, 3];
const HEADER = 8;
const FIELDS = 7;

type Row<K> = CounterRow<K>;

export const row = <K>([k, c]: [K, TrafficCounters]): Row<K> => [k, c.rxBytes, c.txBytes, c.rxPackets, c.txPackets, c.rxPayloadBytes, c.txPayloadBytes];

export const unrow = <K>(r: Row<K>): [K, TrafficCounters] => [
  r[0],
  { rxBytes: r[1], txBytes: r[2], rxPackets: r[3], txPackets: r[4], rxPayloadBytes: r[5], txPayloadBytes: r[6] },
];

export function encodeCheckpoint(
  users: ReadonlyMap<number, TrafficCounters>,
  interfaces: ReadonlyMap<string, TrafficCounters>,
  workloads: WorkloadState = { processes: [], owed: [], queued: [] },
): Buffer {
  const json = Buffer.from(JSON.stringify({ interfaces: Array.from(interfaces, row), workloads }));
  const jsonEnd = HEADER + Math.ceil(json.length / 8) * 8;
  // Buffer.alloc never hands out a slice of the shared pool, so the floats are aligned
  const out = Buffer.alloc(jsonEnd + users.size * FIELDS * 8);
  out.writeUInt32LE(VERSION, 0);
  out.writeUInt32LE(json.length, 4);
  json.copy(out, HEADER);
  const values = new Float64Array(out.buffer, out.byteOffset + jsonEnd, users.size * FIELDS);
  let o = 0;
  users.forEach((c, k) => {
    values[o] = k;
    o = putCounters(values, o + 1, c);
  });
  return out;
}

export function decodeCheckpoint(data: Buffer | undefined): Checkpoint {
  if (data === undefined) return { users: [], interfaces: [] };
  const version = Buffer.isBuffer(data) && data.length >= HEADER ? data.readUInt32LE(0) : undefined;
  if (version === undefined || !KNOWN_VERSIONS.includes(version)) {
    throw new Error(
      `ledger checkpoint version ${version ?? '1 (text)'} is not known to this agent; use the agent version that wrote it, or delete the ledger's "checkpoint" row in table meta to count the kernel counters again from zero`,
    );
  }
  const jsonLength = data.readUInt32LE(4);
  const part = JSON.parse(data.toString('utf8', HEADER, HEADER + jsonLength)) as Row<string>[] | { interfaces: Row<string>[]; workloads: WorkloadState };
  const interfaces = (Array.isArray(part) ? part : part.interfaces).map(unrow);
  const users: [number, TrafficCounters][] = [];
  for (let o = HEADER + Math.ceil(jsonLength / 8) * 8; o + FIELDS * 8 <= data.length; o += FIELDS * 8) {
    users.push([data.readDoubleLE(o), getCounters(data, o + 8)]);
  }
  return Array.isArray(part) ? { users, interfaces } : { users, interfaces, workloads: part.workloads };
}
