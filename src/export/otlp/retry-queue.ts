// Keeps exports that the receiver did not take. The OTLP/HTTP exporter already retries
// one request within its timeout (backoff on 429/502/503/504 and connection errors,
// OTLP/HTTP spec "Retryable Response Codes"); this wrapper covers the longer outage:
// with delta temporality each export carries data no later export repeats, so a failed
// one is queued (bounded, oldest dropped first) and re-sent, in order, before new ones.
// With cumulative temporality the next export carries the totals, so nothing is queued.
// With a spool directory each queued export is also a file there (0600) from the moment
// it is queued until the receiver took it: exports not yet delivered at a stop or a crash
// are sent after the next start, oldest first.
import { mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { resourceFromAttributes } from '@opentelemetry/resources';
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

interface Queued {
  batch: ResourceMetrics;
  /** its copy in the spool directory */
  file: string | undefined;
}

const SPOOL_FILE = /^(\d{12})\.json$/;

/** An export as JSON: the resource as its attributes (a Resource is an object with
 *  methods), the rest is plain data (HrTime pairs, numbers, strings). */
const encodeBatch = (b: ResourceMetrics): string => JSON.stringify({ resource: b.resource.attributes, scopeMetrics: b.scopeMetrics });

function decodeBatch(text: string): ResourceMetrics {
  const o = JSON.parse(text) as { resource: Record<string, string | number | boolean>; scopeMetrics: ResourceMetrics['scopeMetrics'] };
  return { resource: resourceFromAttributes(o.resource), scopeMetrics: o.scopeMetrics };
}

/** Queued exports on disk, one file each, named in queue order. */
function createDiskCopies(dir: string, logger: Logger) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let next = 0;
  return {
    /** the exports an earlier run left, oldest first (unreadable ones are logged and removed) */
    load(): Queued[] {
      const out: Queued[] = [];
      for (const name of readdirSync(dir).filter((f) => SPOOL_FILE.test(f)).sort()) {
        const file = join(dir, name);
        next = Number(SPOOL_FILE.exec(name)![1]) + 1;
        try {
          out.push({ batch: decodeBatch(readFileSync(file, 'utf8')), file });
        } catch (err) {
          logger.error({ file, err: (err as Error).message }, 'OTLP spool: cannot read a queued export; removed it');
          remove(file);
        }
      }
      return out;
    },
    /** the export's file, or undefined when the disk refused (it is then kept in memory only) */
    save(batch: ResourceMetrics): string | undefined {
      const file = join(dir, `${String(next++).padStart(12, '0')}.json`);
      try {
        writeFileSync(`${file}.tmp`, encodeBatch(batch), { mode: 0o600 });
        renameSync(`${file}.tmp`, file); // a crash never leaves half an export behind
        return file;
      } catch (err) {
        logger.error({ file, err: (err as Error).message }, 'OTLP spool: cannot write a queued export; it is kept in memory only and lost at a stop');
        return undefined;
      }
    },
    remove,
  };

  function remove(file: string | undefined): void {
    if (file === undefined) return;
    try {
      unlinkSync(file);
    } catch { /* already gone */ }
  }
}

export function createRetryingExporter(
  inner: PushMetricExporter,
  opts: {
    keepFailed: boolean;
    maxQueue: number;
    endpoint: string;
    logger: Logger;
    onDelivered?: () => void;
    /** where queued exports are kept across restarts (only used with keepFailed) */
    spoolDir?: string;
  },
): SpoolingExporter {
  const disk = opts.keepFailed && opts.spoolDir !== undefined ? createDiskCopies(opts.spoolDir, opts.logger) : undefined;
  const queue: Queued[] = [];
  const s: SpoolState = { failing: false, queued: 0, dropped: 0, exports: 0, failures: 0, lastSuccessMs: undefined, lastError: undefined };
  // One drain at a time: the reader may give up waiting (its timeout) and export again
  // while a drain is still sending; a second drain would send queue[0] twice.
  let draining: Promise<ExportResult> = Promise.resolve({ code: ExportResultCode.SUCCESS });

  function enqueue(q: Queued): void {
    queue.push(q);
    if (queue.length > opts.maxQueue) {
      const oldest = queue.shift()!; // not as disk?.remove(queue.shift()…): without a disk that skips the shift
      disk?.remove(oldest.file);
      s.dropped++;
    }
    s.queued = queue.length;
  }

  function dequeue(): void {
    const head = queue.shift()!;
    disk?.remove(head.file);
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
      const result = await sendOnce(inner, queue[0]!.batch);
      if (result.code !== ExportResultCode.SUCCESS && !refused(result)) {
        noteFailure(result.error?.message ?? 'export failed');
        return result;
      }
      dequeue();
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

  const left = disk?.load() ?? [];
  if (left.length > 0) {
    for (const q of left) enqueue(q);
    opts.logger.info({ endpoint: opts.endpoint, exports: left.length }, 'OTLP: sending exports an earlier run could not deliver');
    draining = draining.then(drain);
  }

  return {
    export(metrics, resultCallback) {
      if (opts.keepFailed) {
        enqueue({ batch: metrics, file: disk?.save(metrics) });
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
