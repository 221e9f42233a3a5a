// The checkpoint stored with every ledger flush: the last kernel counter values the
// booked usage was computed from, per user key and per interface. Compact JSON arrays:
// it holds every key (10,000s) and is rewritten at each flush.
import type { Scope, TrafficCounters } from '../kernel/types.js';

/** A user's counter key: uid and scope in one number (cheap Map key in the poll loop). */
export const userKey = (uid: number, scope: Scope): number => uid * 2 + (scope === 'loopback' ? 1 : 0);

export interface Checkpoint {
  users: [number, TrafficCounters][];
  interfaces: [string, TrafficCounters][];
}

type Row<K> = [K, number, number, number, number, number, number];

const row = <K>([k, c]: [K, TrafficCounters]): Row<K> => [k, c.rxBytes, c.txBytes, c.rxPackets, c.txPackets, c.rxPayloadBytes, c.txPayloadBytes];

const unrow = <K>(r: Row<K>): [K, TrafficCounters] => [
  r[0],
  { rxBytes: r[1], txBytes: r[2], rxPackets: r[3], txPackets: r[4], rxPayloadBytes: r[5], txPayloadBytes: r[6] },
];

export function encodeCheckpoint(
  users: Iterable<[number, TrafficCounters]>,
  interfaces: Iterable<[string, TrafficCounters]>,
): string {
  return JSON.stringify({ v: 1, users: Array.from(users, row), interfaces: Array.from(interfaces, row) });
}

export function decodeCheckpoint(text: string | undefined): Checkpoint {
  if (text === undefined) return { users: [], interfaces: [] };
  const data = JSON.parse(text) as { v: number; users: Row<number>[]; interfaces: Row<string>[] };
  if (data.v !== 1) throw new Error(`ledger checkpoint version ${data.v} is not known to this agent; use the agent version that wrote it`);
  return { users: data.users.map(unrow), interfaces: data.interfaces.map(unrow) };
}
