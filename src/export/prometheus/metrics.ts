// What a scrape shows, as metric families (exposition.ts writes them out). Per-user
// counters come from the ledger's lifetime totals, which survive agent restarts (a crash
// included: the agent books what the kernel counted meanwhile at its first poll), so
// rate() and increase() never see a false reset. Per-interface and per-process counters
// are the kernel's own, which outlive agent restarts too (pinned maps) and restart from
// zero only when the meter is loaded anew (reboot) or the process is new.
//
// Cardinality (stated in docs/fleet.md): per user 6 series per counted scope (12 with
// count_loopback); per process 2, for at most top_processes processes; per interface 12;
// health 7 plus 2 per exporter and 1 per Diameter peer.
import type { InterfaceCounters, Scope, TrafficCounters, WireCounters } from '../../kernel/types.js';
import { UNATTRIBUTED_UID, type UsageTotal } from '../../core/counters.js';
import type { AgentHealth, ProcessUsage } from '../types.js';
import type { MetricFamily, Sample } from './exposition.js';

export interface ScrapeSources {
  /** the ledger's lifetime totals per (uid, scope) */
  userTotals(): Iterable<Readonly<UsageTotal>>;
  userName(uid: number): string;
  /** scopes the agent counts (loopback only with count_loopback) */
  counts(scope: Scope): boolean;
  /** every process as of the last read of the process table */
  processes(): readonly ProcessUsage[];
  interfaces(): readonly InterfaceCounters[];
  health(): AgentHealth | undefined;
}

const DIRECTIONS = [
  ['transmit', 'tx'],
  ['receive', 'rx'],
] as const;

type Direction = (typeof DIRECTIONS)[number][0];

/** One counter family with a transmit and a receive sample per row. */
function byDirection<T>(
  family: Omit<MetricFamily, 'samples' | 'type'>,
  rows: readonly T[],
  labels: (row: T) => Record<string, string>,
  value: (row: T, direction: Direction) => number,
): MetricFamily {
  const samples: Sample[] = [];
  for (const row of rows) for (const [direction] of DIRECTIONS) samples.push({ labels: { ...labels(row), direction }, value: value(row, direction) });
  return { ...family, type: 'counter', samples };
}

const wire = (c: TrafficCounters | WireCounters, d: Direction, what: 'Bytes' | 'Packets') =>
  d === 'transmit' ? c[`tx${what}`] : c[`rx${what}`];
const payload = (c: TrafficCounters, d: Direction) => (d === 'transmit' ? c.txPayloadBytes : c.rxPayloadBytes);

function userFamilies(src: ScrapeSources): MetricFamily[] {
  const users = [...src.userTotals()]
    .filter((t) => t.uid !== UNATTRIBUTED_UID && src.counts(t.scope))
    .sort((a, b) => a.uid - b.uid || a.scope.localeCompare(b.scope));
  const labels = (t: UsageTotal) => ({ user: src.userName(t.uid), uid: String(t.uid), scope: t.scope });
  return [
    byDirection({ name: 'ubia_user_network_bytes', unit: 'bytes', help: 'IP-layer bytes (headers included, as on the wire) of a user\'s sockets, from the ledger' }, users, labels, (t, d) => wire(t, d, 'Bytes')),
    byDirection({ name: 'ubia_user_network_packets', help: 'IP packets of a user\'s sockets (a GSO/TSO super-packet counts as its segments), from the ledger' }, users, labels, (t, d) => wire(t, d, 'Packets')),
    byDirection({ name: 'ubia_user_payload_bytes', unit: 'bytes', help: 'socket payload bytes a user\'s processes sent or received, from the ledger' }, users, labels, payload),
  ];
}

/** The `topN` processes with the highest rate at the last read, ties by most bytes. */
export function busiest(processes: readonly ProcessUsage[], topN: number): ProcessUsage[] {
  return [...processes]
    .sort((a, b) => b.rxRate + b.txRate - (a.rxRate + a.txRate) || b.rxBytes + b.txBytes - (a.rxBytes + a.txBytes) || a.pid - b.pid)
    .slice(0, topN);
}

function processFamilies(src: ScrapeSources, topN: number): MetricFamily[] {
  if (topN === 0) return [];
  const top = busiest(src.processes(), topN);
  const labels = (p: ProcessUsage) => ({ pid: String(p.pid), comm: p.comm, user: p.user, uid: String(p.uid) });
  return [
    byDirection({ name: 'ubia_process_network_bytes', unit: 'bytes', help: `IP-layer bytes of the ${topN} processes with the highest rate (the set changes as processes get busy or idle)` }, top, labels, (p, d) => wire(p, d, 'Bytes')),
  ];
}

function interfaceFamilies(src: ScrapeSources): MetricFamily[] {
  const ifaces = [...src.interfaces()].sort((a, b) => a.ifindex - b.ifindex);
  const labels = (i: InterfaceCounters) => ({ interface: i.name });
  const parts = [
    ['network', 'total', 'IP %s the interface carried (tc)'],
    ['attributed', 'attributed', 'IP %s on the interface attributed to a local user socket'],
    ['unattributed', 'unattributed', 'IP %s on the interface with no local user socket (kernel replies, time-wait, forwarded, no socket)'],
  ] as const;
  return parts.flatMap(([name, part, help]) => [
    byDirection({ name: `ubia_interface_${name}_bytes`, unit: 'bytes', help: help.replace('%s', 'bytes') }, ifaces, labels, (i, d) => wire(i[part], d, 'Bytes')),
    byDirection({ name: `ubia_interface_${name}_packets`, help: help.replace('%s', 'packets') }, ifaces, labels, (i, d) => wire(i[part], d, 'Packets')),
  ]);
}

function healthFamilies(h: AgentHealth): MetricFamily[] {
  const one = (value: number, labels: Record<string, string> = {}): Sample[] => [{ labels, value }];
  return [
    {
      name: 'ubia_meter_overflows',
      type: 'counter',
      help: 'kernel map inserts refused because the map was full, per map (peers: datagrams beyond an unconnected socket\'s bound of peer flows; counted, never lost)',
      samples: Object.entries(h.meter.overflows).map(([map, value]) => ({ labels: { map }, value })),
    },
    { name: 'ubia_meter_events_dropped', type: 'counter', help: 'ring-buffer events that did not fit (their data is recovered by the map sweep)', samples: one(h.meter.eventsDropped) },
    { name: 'ubia_poll_duration_seconds', type: 'gauge', unit: 'seconds', help: 'time the last read of the kernel counters took', samples: one(h.lastPollSeconds) },
    {
      name: 'ubia_last_poll_timestamp_seconds',
      type: 'gauge',
      unit: 'seconds',
      help: 'when the last read of the kernel counters succeeded (Unix time); a stuck agent stops moving it',
      samples: h.lastPollAtMs === undefined ? [] : one(h.lastPollAtMs / 1000),
    },
    {
      name: 'ubia_exporter_queue_length',
      type: 'gauge',
      help: 'records waiting in an exporter (memory or spool)',
      samples: h.exporters.map((e) => ({ labels: { exporter: e.name }, value: e.queued })),
    },
    {
      name: 'ubia_exporter_dropped_records',
      type: 'counter',
      help: 'records an exporter gave up on',
      samples: h.exporters.map((e) => ({ labels: { exporter: e.name }, value: e.dropped })),
    },
    {
      name: 'ubia_diameter_peer_state',
      type: 'gauge',
      help: '1 for the current state of each Diameter peer connection (closed, connecting, wait-cea, open, suspect, closing)',
      samples: h.diameterPeers.map((p) => ({ labels: { peer: p.peer, state: p.state }, value: 1 })),
    },
  ];
}

/** Everything one scrape shows, in a stable order. */
export function scrapeFamilies(src: ScrapeSources, topProcesses: number): MetricFamily[] {
  const health = src.health();
  return [
    ...userFamilies(src),
    ...processFamilies(src, topProcesses),
    ...interfaceFamilies(src),
    ...(health ? healthFamilies(health) : []),
  ];
}
