// [otlp] section of /etc/ubia/ubia.toml: where and how the OTLP metrics exporter sends.
// The section is optional: absent = exporter disabled. Keys follow the OTLP exporter
// specification's settings (endpoint, protocol, headers, timeout, compression,
// temporality preference) so an admin who knows OTEL_EXPORTER_OTLP_* recognises them.
import { z } from 'zod';
import { topProcessesSetting } from '../top-processes.js';

export const otlpConfigSchema = z
  .strictObject({
    endpoint: z
      .url({ protocol: /^https?$/ })
      .default('http://127.0.0.1:4318/v1/metrics')
      .describe('full URL of the OTLP/HTTP metrics receiver (path included); default http://127.0.0.1:4318/v1/metrics'),
    protocol: z
      .enum(['http/protobuf', 'http/json'])
      .default('http/protobuf')
      .describe('OTLP/HTTP encoding: "http/protobuf" or "http/json"; default http/protobuf'),
    headers: z
      .record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'a header name is an HTTP token'), z.string())
      .default({})
      .describe('extra HTTP headers sent with every export, e.g. { Authorization = "Bearer …" }; default none'),
    interval: z
      .number()
      .min(1)
      .max(3600)
      .default(60)
      .describe('seconds between two exports; default 60'),
    timeout: z
      .number()
      .min(1)
      .max(600)
      .default(10)
      .describe('seconds one export (its retries included) may take; must not exceed interval; default 10'),
    temporality: z
      .enum(['cumulative', 'delta'])
      .default('cumulative')
      .describe('"cumulative" (totals since the agent started; Prometheus-style backends) or "delta" (per-interval amounts); default cumulative'),
    compression: z
      .enum(['none', 'gzip'])
      .default('none')
      .describe('request body compression: "none" or "gzip"; default none'),
    top_processes: topProcessesSetting('with the most bytes in each interval'),
    top_units: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .default(100)
      .describe('per-unit metrics (a user\'s bytes, packets and payload in a systemd unit, batch job or container) for the N (user, unit) pairs with the most bytes in each interval (bounds cardinality: jobs and containers come and go); 0 = none; default 100'),
    max_queue: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(60)
      .describe('delta exports not yet delivered that are kept (in memory and as files in otlp-spool/ next to the ledger, so a restart sends them too) and re-sent when the receiver is back (cumulative exports need no queue: the next one carries the totals); oldest dropped first; default 60'),
  })
  .refine((c) => c.timeout <= c.interval, {
    message: 'timeout must not exceed interval (an export must end before the next begins)',
    path: ['timeout'],
  })
  .describe('OpenTelemetry metrics over OTLP/HTTP: per-user bytes and packets by direction, the top processes and (user, unit) pairs of each interval and ubia\'s own health (absent = disabled)');

export type OtlpConfig = z.output<typeof otlpConfigSchema>;
