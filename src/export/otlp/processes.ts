// Per-process traffic for OTLP, limited to the top N processes of each export interval.
// The agent hands exporters flows with cumulative counters; this module turns them into
// per-process byte counts and, at each collection, emits `process.network.io` for the N
// busiest processes only. It is a MetricProducer (not SDK instruments) because a
// cumulative SDK instrument keeps every attribute set it ever saw, so the series count
// would grow with every short-lived process; here cardinality is at most N per export.
// With delta temporality a process's points carry its bytes since the last collection
// (a failed export is queued by retry-queue.ts) and the N busiest of that interval are chosen.
// With cumulative temporality they carry its totals and the N busiest since the last
// export the receiver took are chosen (the same thing while exports succeed), so the first
// export after an outage shows the processes that were busy during it.
import { ValueType, type Attributes, type HrTime } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  type CollectionResult,
  type DataPoint,
  type MetricProducer,
  type SumMetricData,
} from '@opentelemetry/sdk-metrics';
import type { Resource } from '@opentelemetry/resources';
import type { FlowSnapshot } from '../types.js';

/** A flow absent from this many consecutive polls is forgotten (its end was missed). */
const FLOW_ABSENT_POLLS = 3;
/** A process with no traffic for this many collections is forgotten (cumulative restarts). */
const PROCESS_IDLE_COLLECTIONS = 10;

interface FlowSeen {
  txBytes: number;
  rxBytes: number;
  absentPolls: number;
}

interface ProcessTraffic {
  attributes: Attributes;
  /** since the process was first seen (cumulative temporality) */
  txTotal: number;
  rxTotal: number;
  /** since the last collection (delta temporality: the values and the ranking) */
  txInterval: number;
  rxInterval: number;
  /** since the collection of the last delivered export (cumulative temporality: the ranking) */
  undelivered: number;
  /** `undelivered` when the export in flight was collected */
  collectedUndelivered: number;
  firstSeen: HrTime;
  idleCollections: number;
}

export interface ProcessTop extends MetricProducer {
  /** every active flow at a poll (cumulative counters) */
  activeFlows(flows: FlowSnapshot[]): void;
  /** a flow closed with its final cumulative counters */
  flowEnded(flow: FlowSnapshot): void;
  /** the last collected export reached the receiver */
  delivered(): void;
  /** processes currently tracked (for status) */
  tracked(): number;
}

export function msToHrTime(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)];
}

function processKey(f: FlowSnapshot): string {
  return `${f.pid}\u0000${f.uid}\u0000${f.comm}`;
}

export function createProcessTop(opts: {
  topN: number;
  temporality: 'delta' | 'cumulative';
  resource: Resource;
  scope: { name: string; version: string };
  now?: () => number;
}): ProcessTop {
  const now = opts.now ?? Date.now;
  const flows = new Map<bigint, FlowSeen>();
  const processes = new Map<string, ProcessTraffic>();
  let lastCollection = msToHrTime(now());

  function account(f: FlowSnapshot, seen: FlowSeen | undefined): void {
    // Counters are cumulative per flow; a smaller value means a new socket re-used the cookie.
    const tx = seen && f.txBytes >= seen.txBytes ? f.txBytes - seen.txBytes : f.txBytes;
    const rx = seen && f.rxBytes >= seen.rxBytes ? f.rxBytes - seen.rxBytes : f.rxBytes;
    if (tx === 0 && rx === 0) return;
    const key = processKey(f);
    let p = processes.get(key);
    if (!p) {
      p = {
        attributes: {
          'process.pid': f.pid,
          'process.executable.name': f.comm,
          'user.id': String(f.uid),
          'user.name': f.user,
        },
        txTotal: 0,
        rxTotal: 0,
        txInterval: 0,
        rxInterval: 0,
        undelivered: 0,
        collectedUndelivered: 0,
        firstSeen: msToHrTime(now()),
        idleCollections: 0,
      };
      processes.set(key, p);
    }
    p.txTotal += tx;
    p.rxTotal += rx;
    p.txInterval += tx;
    p.rxInterval += rx;
    p.undelivered += tx + rx;
  }

  /** What ranks a process for the top N: its bytes the receiver has not seen yet. */
  function pending(p: ProcessTraffic): number {
    return opts.temporality === 'delta' ? p.txInterval + p.rxInterval : p.undelivered;
  }

  function point(p: ProcessTraffic, direction: 'transmit' | 'receive', end: HrTime): DataPoint<number> {
    const delta = opts.temporality === 'delta';
    const value = direction === 'transmit' ? (delta ? p.txInterval : p.txTotal) : delta ? p.rxInterval : p.rxTotal;
    return {
      startTime: delta ? lastCollection : p.firstSeen,
      endTime: end,
      attributes: { ...p.attributes, 'network.io.direction': direction },
      value,
    };
  }

  return {
    activeFlows(snapshot) {
      const present = new Set<bigint>();
      for (const f of snapshot) {
        present.add(f.cookie);
        account(f, flows.get(f.cookie));
        flows.set(f.cookie, { txBytes: f.txBytes, rxBytes: f.rxBytes, absentPolls: 0 });
      }
      for (const [cookie, seen] of flows) {
        if (!present.has(cookie) && ++seen.absentPolls >= FLOW_ABSENT_POLLS) flows.delete(cookie);
      }
    },

    flowEnded(f) {
      account(f, flows.get(f.cookie));
      flows.delete(f.cookie);
    },

    delivered() {
      for (const p of processes.values()) p.undelivered -= Math.min(p.undelivered, p.collectedUndelivered);
    },

    tracked: () => processes.size,

    async collect(): Promise<CollectionResult> {
      const end = msToHrTime(now());
      const busy = [...processes.values()]
        .filter((p) => pending(p) > 0)
        .sort((a, b) => pending(b) - pending(a))
        .slice(0, opts.topN);
      const dataPoints = busy.flatMap((p) => [point(p, 'transmit', end), point(p, 'receive', end)]);
      for (const [key, p] of processes) {
        const idle = p.txInterval + p.rxInterval === 0;
        p.txInterval = 0;
        p.rxInterval = 0;
        p.collectedUndelivered = p.undelivered;
        p.idleCollections = idle ? p.idleCollections + 1 : 0;
        if (p.idleCollections >= PROCESS_IDLE_COLLECTIONS) processes.delete(key);
      }
      lastCollection = end;
      const metric: SumMetricData = {
        // OpenTelemetry semantic conventions: process.network.io (By, network.io.direction)
        descriptor: {
          name: 'process.network.io',
          description: `network bytes (IP layer) of the ${opts.topN} busiest processes of the interval`,
          unit: 'By',
          valueType: ValueType.INT,
        },
        aggregationTemporality:
          opts.temporality === 'delta' ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints,
      };
      return {
        resourceMetrics: {
          resource: opts.resource,
          scopeMetrics: dataPoints.length ? [{ scope: opts.scope, metrics: [metric] }] : [],
        },
        errors: [],
      };
    },
  };
}
