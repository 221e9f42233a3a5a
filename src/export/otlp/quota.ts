// Users' quotas as OTLP gauges (issue 14): read from the agent once per export.
import { ValueType, type Meter } from '@opentelemetry/api';
import type { QuotaGauge } from '../types.js';

/** Per user with a quota: the bytes counted against it this period and its limit (grants
 *  included), as gauges read at collection time; used / limit is how full it is. */
export function registerQuotaGauges(meter: Meter, source: () => readonly QuotaGauge[]): void {
  const used = meter.createObservableGauge('ubia.user.quota.used', { description: "wire bytes counted against a user's quota in the current period", unit: 'By', valueType: ValueType.INT });
  const limit = meter.createObservableGauge('ubia.user.quota.limit', { description: "a user's quota for the current period, grants included", unit: 'By', valueType: ValueType.INT });
  meter.addBatchObservableCallback(
    (result) => {
      for (const q of source()) {
        const user = { 'user.id': String(q.uid), 'user.name': q.user };
        result.observe(used, q.usedBytes, user);
        result.observe(limit, q.limitBytes, user);
      }
    },
    [used, limit],
  );
}
