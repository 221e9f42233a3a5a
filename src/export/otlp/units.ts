// Per-unit traffic for OTLP: a user's bytes and packets by the systemd unit, batch job or
// container they ran in, for the N busiest (user, unit) pairs of each export interval
// (top-series.ts: jobs and containers come and go, so SDK instruments would keep a series
// for each one ever seen). Attribute names: `container.id` is the OpenTelemetry semantic
// conventions' (container registry); they define no systemd or batch-job attribute, so
// `systemd.unit` is systemd's own name for the field (journal field _SYSTEMD_UNIT, as
// issue 15 asks) and the job id is `ubia.job.id`, in ubia's namespace as the semantic
// conventions ask of attributes they do not define (k8s.job.* is for Kubernetes Jobs only).
import type { Attributes } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import type { Workload, WorkloadUsage } from '../types.js';
import { createTopSeries, type TopSeries } from './top-series.js';
import { trafficMetrics } from './traffic-metrics.js';

const SYSTEMD_KINDS = new Set<Workload['kind']>(['service', 'scope', 'slice']);

/** The attributes of one user's traffic in one unit. */
export function unitAttributes(u: Pick<WorkloadUsage, 'uid' | 'user' | 'workload'>): Attributes {
  const unit = u.workload;
  return {
    'user.id': String(u.uid),
    'user.name': u.user,
    'ubia.unit.kind': unit.kind,
    'ubia.unit.name': unit.name,
    ...(SYSTEMD_KINDS.has(unit.kind) ? { 'systemd.unit': unit.name } : {}),
    ...(unit.jobId !== undefined ? { 'ubia.job.id': unit.jobId } : {}),
    ...(unit.containerId !== undefined ? { 'container.id': unit.containerId } : {}),
  };
}

export interface UnitTop extends Omit<TopSeries, 'add'> {
  /** one poll's deltas by (user, unit) */
  add(units: readonly WorkloadUsage[]): void;
}

export function createUnitTop(opts: {
  topN: number;
  temporality: 'delta' | 'cumulative';
  resource: Resource;
  scope: { name: string; version: string };
}): UnitTop {
  const top = createTopSeries({
    ...opts,
    metrics: trafficMetrics('unit'),
  });
  return {
    add(units) {
      for (const u of units) top.add(`${u.uid}\u0000${u.workload.kind}\u0000${u.workload.name}`, () => unitAttributes(u), u);
    },
    delivered: top.delivered,
    tracked: top.tracked,
    collect: top.collect,
  };
}
