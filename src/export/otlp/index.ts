// The OTLP metrics exporter: per-user bytes and packets by direction, the busiest
// processes and (user, unit) pairs, and ubia's own health, pushed to an OTLP/HTTP receiver (JSON or protobuf)
// by @opentelemetry/sdk-metrics' periodic reader. Attribute names follow the
// OpenTelemetry semantic conventions (user.id, user.name, network.io.direction,
// process.pid, process.executable.name, container.id; host.name and service.name on the
// resource; units.ts says which unit attributes are ubia's own).
import type { Logger } from 'pino';
import { ValueType } from '@opentelemetry/api';
import { MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import {
  AggregationTemporalityPreference,
  OTLPMetricExporter as JsonExporter,
} from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtobufExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import type { Exporter, ExporterStatus, HealthSource, QuotaGauge } from '../types.js';
import type { OtlpConfig } from './config.js';
import { registerHealthMetrics } from './health.js';
import { registerQuotaGauges } from './quota.js';
import { createProcessTop } from './processes.js';
import { createRetryingExporter } from './retry-queue.js';
import { trafficMetrics } from './traffic-metrics.js';
import { createUnitTop } from './units.js';

export { otlpConfigSchema, type OtlpConfig } from './config.js';

export interface OtlpExporterOptions {
  logger: Logger;
  /** host.name resource attribute (os.hostname() in the agent) */
  hostName: string;
  /** service.version resource attribute (the agent's package version) */
  version?: string;
  /** ubia's health figures, read once per export; omit to send no health metrics */
  health?: HealthSource;
  /** the users' quotas, read once per export; omit to send no quota gauges */
  quotas?: () => readonly QuotaGauge[];
  /** where delta exports not yet delivered are kept across restarts; omit to keep them
   *  in memory only */
  spoolDir?: string;
}

function createWireExporter(cfg: OtlpConfig): PushMetricExporter {
  const options = {
    url: cfg.endpoint,
    headers: cfg.headers,
    timeoutMillis: cfg.timeout * 1000,
    compression: cfg.compression === 'gzip' ? CompressionAlgorithm.GZIP : CompressionAlgorithm.NONE,
    temporalityPreference:
      cfg.temporality === 'delta' ? AggregationTemporalityPreference.DELTA : AggregationTemporalityPreference.CUMULATIVE,
  };
  return cfg.protocol === 'http/json' ? new JsonExporter(options) : new ProtobufExporter(options);
}

export function createOtlpExporter(cfg: OtlpConfig, opts: OtlpExporterOptions): Exporter {
  const resource = resourceFromAttributes({
    'service.name': 'ubia',
    'host.name': opts.hostName,
    ...(opts.version ? { 'service.version': opts.version } : {}),
  });
  const scope = { name: 'ubia', version: opts.version ?? '' };
  const processes = createProcessTop({ topN: cfg.top_processes, temporality: cfg.temporality, resource, scope });
  const units = createUnitTop({ topN: cfg.top_units, temporality: cfg.temporality, resource, scope });
  const wire = createRetryingExporter(createWireExporter(cfg), {
    keepFailed: cfg.temporality === 'delta',
    maxQueue: cfg.max_queue,
    endpoint: cfg.endpoint,
    logger: opts.logger,
    onDelivered: () => {
      processes.delivered();
      units.delivered();
    },
    spoolDir: opts.spoolDir,
  });
  const reader = new PeriodicExportingMetricReader({
    exporter: wire,
    exportIntervalMillis: cfg.interval * 1000,
    exportTimeoutMillis: cfg.timeout * 1000,
    metricProducers: [...(cfg.top_processes > 0 ? [processes] : []), ...(cfg.top_units > 0 ? [units] : [])],
  });
  const provider = new MeterProvider({ resource, readers: [reader] });
  const meter = provider.getMeter(scope.name, scope.version);

  const userCounters = trafficMetrics('user').map((m) =>
    ({ ...m, counter: meter.createCounter(m.name, { description: m.description, unit: m.unit, valueType: ValueType.INT }) }),
  );
  if (opts.health) registerHealthMetrics(meter, opts.health);
  if (opts.quotas) registerQuotaGauges(meter, opts.quotas);

  opts.logger.info(
    { endpoint: cfg.endpoint, protocol: cfg.protocol, interval: cfg.interval, temporality: cfg.temporality },
    'OTLP metrics exporter started',
  );

  let closed = false;
  return {
    name: 'otlp',

    usage(interval) {
      for (const u of interval.users) {
        const user = { 'user.id': String(u.uid), 'user.name': u.user };
        for (const m of userCounters) {
          m.counter.add(u[m.tx], { ...user, 'network.io.direction': 'transmit' });
          m.counter.add(u[m.rx], { ...user, 'network.io.direction': 'receive' });
        }
      }
      if (interval.workloads && cfg.top_units > 0) units.add(interval.workloads);
    },

    activeFlows(flows) {
      processes.activeFlows(flows);
    },

    flowEnded(flow) {
      processes.flowEnded(flow);
    },

    status(): ExporterStatus {
      const s = wire.state();
      return {
        name: 'otlp',
        state: s.failing ? 'degraded' : 'ok',
        detail: s.failing
          ? `retrying ${cfg.endpoint}: ${s.lastError}`
          : s.lastSuccessMs === undefined
            ? `first export to ${cfg.endpoint} within ${cfg.interval}s`
            : `delivering to ${cfg.endpoint}`,
        queued: s.queued,
        dropped: s.dropped,
        extra: {
          endpoint: cfg.endpoint,
          protocol: cfg.protocol,
          temporality: cfg.temporality,
          exports: s.exports,
          failures: s.failures,
          lastSuccessMs: s.lastSuccessMs ?? null,
          processesTracked: processes.tracked(),
          unitsTracked: units.tracked(),
        },
      };
    },

    async close() {
      if (closed) return;
      closed = true;
      // shutdown() makes one last export (bounded by the timeout) and releases the timer
      await provider.shutdown();
      opts.logger.info({ endpoint: cfg.endpoint }, 'OTLP metrics exporter stopped');
    },
  };
}
