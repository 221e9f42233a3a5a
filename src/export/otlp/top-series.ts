// Counters for a changing set of things (processes, units), limited to the N busiest of
// each export interval. It is a MetricProducer (not SDK instruments) because a cumulative
// SDK instrument keeps every attribute set it ever saw, so the series count would grow
// with every short-lived process or job; here cardinality is at most N things per export,
// and a thing without traffic for PROCESS_IDLE_COLLECTIONS collections is forgotten.
// With delta temporality a thing's points carry its counts since the last collection (a
// failed export is queued by retry-queue.ts) and the N busiest of that interval are chosen.
// With cumulative temporality they carry its totals and the N busiest since the last
// export the receiver took are chosen (the same thing while exports succeed), so the first
// export after an outage shows the things that were busy during it.
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
import { addInto, zeroCounters } from '../../core/counters.js';
import type { TrafficCounters } from '../../kernel/types.js';

/** A thing with no traffic for this many collections is forgotten (cumulative restarts). */
const IDLE_COLLECTIONS = 10;

/** One metric of the series, by network.io.direction: the tx field is "transmit", rx "receive". */
export interface SeriesMetric {
  name: string;
  unit: string;
  description: string;
  tx: keyof TrafficCounters;
  rx: keyof TrafficCounters;
}

interface Series {
  attributes: Attributes;
  /** since the thing was first seen (cumulative temporality) */
  total: TrafficCounters;
  /** since the last collection (delta temporality: the values and the ranking) */
  interval: TrafficCounters;
  /** ranked counts since the collection of the last delivered export (cumulative temporality) */
  undelivered: number;
  /** `undelivered` when the export in flight was collected */
  collectedUndelivered: number;
  firstSeen: HrTime;
  idleCollections: number;
}

export interface TopSeries extends MetricProducer {
  /** counts of the thing `key` (its attributes are made once, when it is new) */
  add(key: string, attributes: () => Attributes, counts: TrafficCounters): void;
  /** the last collected export reached the receiver */
  delivered(): void;
  /** things currently tracked (for status) */
  tracked(): number;
}

function msToHrTime(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)];
}

/** `metrics[0]` ranks: its tx + rx decide which N things are exported. */
export function createTopSeries(opts: {
  topN: number;
  metrics: readonly SeriesMetric[];
  temporality: 'delta' | 'cumulative';
  resource: Resource;
  scope: { name: string; version: string };
  now?: () => number;
}): TopSeries {
  const now = opts.now ?? Date.now;
  const delta = opts.temporality === 'delta';
  const ranking = opts.metrics[0]!;
  const rankOf = (c: TrafficCounters) => c[ranking.tx] + c[ranking.rx];
  const series = new Map<string, Series>();
  let lastCollection = msToHrTime(now());

  /** What ranks a thing for the top N: its counts the receiver has not seen yet. */
  const pending = (s: Series): number => (delta ? rankOf(s.interval) : s.undelivered);

  function point(s: Series, m: SeriesMetric, direction: 'transmit' | 'receive', end: HrTime): DataPoint<number> {
    const counts = delta ? s.interval : s.total;
    return {
      startTime: delta ? lastCollection : s.firstSeen,
      endTime: end,
      attributes: { ...s.attributes, 'network.io.direction': direction },
      value: counts[direction === 'transmit' ? m.tx : m.rx],
    };
  }

  return {
    add(key, attributes, counts) {
      let s = series.get(key);
      if (!s) {
        s = { attributes: attributes(), total: zeroCounters(), interval: zeroCounters(), undelivered: 0, collectedUndelivered: 0, firstSeen: msToHrTime(now()), idleCollections: 0 };
        series.set(key, s);
      }
      addInto(s.total, counts);
      addInto(s.interval, counts);
      s.undelivered += rankOf(counts);
    },

    delivered() {
      for (const s of series.values()) s.undelivered -= Math.min(s.undelivered, s.collectedUndelivered);
    },

    tracked: () => series.size,

    async collect(): Promise<CollectionResult> {
      const end = msToHrTime(now());
      const busy = [...series.values()]
        .filter((s) => pending(s) > 0)
        .sort((a, b) => pending(b) - pending(a))
        .slice(0, opts.topN);
      const metrics: SumMetricData[] = opts.metrics.map((m) => ({
        descriptor: { name: m.name, description: m.description, unit: m.unit, valueType: ValueType.INT },
        aggregationTemporality: delta ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints: busy.flatMap((s) => [point(s, m, 'transmit', end), point(s, m, 'receive', end)]),
      }));
      for (const [key, s] of series) {
        const idle = rankOf(s.interval) === 0;
        s.interval = zeroCounters();
        s.collectedUndelivered = s.undelivered;
        s.idleCollections = idle ? s.idleCollections + 1 : 0;
        if (s.idleCollections >= IDLE_COLLECTIONS) series.delete(key);
      }
      lastCollection = end;
      return {
        resourceMetrics: {
          resource: opts.resource,
          scopeMetrics: busy.length ? [{ scope: opts.scope, metrics }] : [],
        },
        errors: [],
      };
    },
  };
}
