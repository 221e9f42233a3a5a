// Keeps exports that the receiver did not take. The OTLP/HTTP exporter already retries
// one request within its timeout (backoff on 429/502/503/504 and connection errors,
// OTLP/HTTP spec "Retryable Response Codes"); this wrapper covers the longer outage:
// with delta temporality each export carries data no later export repeats, so a failed
// one is queued (bounded, oldest dropped first) and re-sent, in order, before new ones.
// With cumulative temporality the next export carries the totals, so nothing is queued.
import type { Logger } from 'pino';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { PushMetricExporter, ResourceMetrics } from '@opentelemetry/sdk-metrics';

export interface SpoolState {
  /** the last export attempt failed */
  failing: boolean;
  queued: number;
  dropped: number;
  exports: number;
  failures: number;
  lastSuccessMs: number | undefined;
  lastError: string | undefined;
}

export interface SpoolingExporter extends PushMetricExporter {
  state(): SpoolState;
}

/** A 4xx other than 429 means the receiver refuses this payload: re-sending cannot help
 *  (OTLP/HTTP spec, "Failures": only 429, 502, 503, 504 are retryable). */
function refused(result: ExportResult): boolean {
  const status = (result.error as { code?: unknown } | undefined)?.code;
  return typeof status === 'number' && status >= 400 && status < 500 && status !== 429;
}

function sendOnce(inner: PushMetricExporter, batch: ResourceMetrics): Promise<ExportResult> {
  return new Promise((resolve) => inner.export(batch, resolve));
}

export function createRetryingExporter(
  inner: PushMetricExporter,
  opts: { keepFailed: boolean; maxQueue: number; endpoint: string; logger: Logger; onDelivered?: () => void },
): SpoolingExporter {
  const queue: ResourceMetrics[] = [];
  const s: SpoolState = { failing: false, queued: 0, dropped: 0, exports: 0, failures: 0, lastSuccessMs: undefined, lastError: undefined };
  // One drain at a time: the reader may give up waiting (its timeout) and export again
  // while a drain is still sending; a second drain would send queue[0] twice.
  let draining: Promise<ExportResult> = Promise.resolve({ code: ExportResultCode.SUCCESS });

  function enqueue(batch: ResourceMetrics): void {
    queue.push(batch);
    if (queue.length > opts.maxQueue) {
      queue.shift();
      s.dropped++;
    }
    s.queued = queue.length;
  }

  function noteFailure(error: string): void {
    s.failures++;
    s.lastError = error;
    if (!s.failing) {
      s.failing = true;
      opts.logger.warn(
        { endpoint: opts.endpoint, err: error },
        'OTLP export failed; will retry every interval (check that the receiver is up and the endpoint is right)',
      );
    }
  }

  function noteSuccess(): void {
    opts.onDelivered?.();
    s.exports++;
    s.lastSuccessMs = Date.now();
    if (s.failing) {
      s.failing = false;
      opts.logger.info({ endpoint: opts.endpoint, failures: s.failures }, 'OTLP export delivered again');
    }
  }

  /** Sends queued batches oldest first; stops at the first failure (receiver still down). */
  async function drain(): Promise<ExportResult> {
    while (queue.length > 0) {
      const result = await sendOnce(inner, queue[0]!);
      if (result.code !== ExportResultCode.SUCCESS && !refused(result)) {
        noteFailure(result.error?.message ?? 'export failed');
        return result;
      }
      queue.shift();
      s.queued = queue.length;
      if (result.code === ExportResultCode.SUCCESS) {
        noteSuccess();
        continue;
      }
      // kept at the head it would block every later export
      s.dropped++;
      s.failures++;
      s.lastError = result.error?.message ?? 'export refused';
      opts.logger.error({ endpoint: opts.endpoint, err: result.error?.message }, 'OTLP receiver refused an export; dropped it (check the endpoint path and headers)');
    }
    return { code: ExportResultCode.SUCCESS };
  }

  return {
    export(metrics, resultCallback) {
      if (opts.keepFailed) {
        enqueue(metrics);
        draining = draining.then(drain);
        void draining.then(resultCallback);
        return;
      }
      void sendOnce(inner, metrics).then((result) => {
        if (result.code === ExportResultCode.SUCCESS) noteSuccess();
        else noteFailure(result.error?.message ?? 'export failed');
        resultCallback(result);
      });
    },
    forceFlush: () => inner.forceFlush(),
    shutdown: () => inner.shutdown(),
    selectAggregationTemporality: inner.selectAggregationTemporality?.bind(inner),
    selectAggregation: inner.selectAggregation?.bind(inner),
    state: () => ({ ...s }),
  };
}
