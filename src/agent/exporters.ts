// Creates one Exporter per configured exporter section ([ipfix], [diameter], [otlp],
// [prometheus]), and the flow recorder that feeds the flow store of [history].
// Each exporter owns its queue/spool/retry; the agent only hands them the same facts.
// Exporter modules are imported only when configured: the OpenTelemetry SDK alone adds
// ~30 MiB of RSS to an agent that does not use it.
import { join } from 'node:path';
import type { Exporter, HealthSource, ProcessUsage, QuotaGauge } from '../export/types.js';
import type { UbiaConfig } from '../config/config.js';
import type { InterfaceCounters, Scope } from '../kernel/types.js';
import type { Ledger } from '../ledger/ledger.js';
import type { Logger } from 'pino';
import type { FlowStore } from '../history/store.js';

export interface ExporterContext {
  logger: Logger;
  ledger: Ledger;
  hostName: string;
  /** directory for exporters' on-disk state (spools), next to the ledger */
  stateDir: string;
  /** the agent's health figures, for exporters that publish them (OTLP, Prometheus) */
  health: HealthSource;
  version: string;
  /** the flow store, when [history] is enabled and it opened */
  history?: FlowStore;
  /** what a scrape reads besides the ledger (Prometheus) */
  userName(uid: number): string;
  counts(scope: Scope): boolean;
  processes(): readonly ProcessUsage[];
  interfaces(): readonly InterfaceCounters[];
  /** used and limit per user with a quota (OTLP) */
  quotas(): readonly QuotaGauge[];
}

export async function createExporters(config: UbiaConfig, ctx: ExporterContext): Promise<Exporter[]> {
  const out: Exporter[] = [];
  const logger = (name: string) => ctx.logger.child({ exporter: name });
  if (config.ipfix) {
    const { createIpfixExporter } = await import('../export/ipfix/index.js');
    // the per-user usage window is saved with the ledger's checkpoint, in its database
    out.push(createIpfixExporter(config.ipfix, { logger: logger('ipfix'), spoolDir: join(ctx.stateDir, 'ipfix-spool'), db: ctx.ledger.db }));
  }
  if (config.diameter) {
    const { createDiameterAccounting } = await import('../export/diameter/index.js');
    // the Diameter exporter names its own child logger and keeps its outbox in the ledger db
    out.push(createDiameterAccounting(config.diameter, { logger: ctx.logger, db: ctx.ledger.db, hostName: ctx.hostName }));
  }
  if (config.otlp) {
    const { createOtlpExporter } = await import('../export/otlp/index.js');
    out.push(
      createOtlpExporter(config.otlp, { logger: logger('otlp'), hostName: ctx.hostName, version: ctx.version, health: ctx.health, quotas: ctx.quotas, spoolDir: join(ctx.stateDir, 'otlp-spool') }),
    );
  }
  if (config.prometheus) {
    const { createPrometheusExporter } = await import('../export/prometheus/index.js');
    const { ledger, userName, counts, processes, interfaces, health } = ctx;
    out.push(
      await createPrometheusExporter(config.prometheus, {
        logger: logger('prometheus'),
        sources: { userTotals: () => ledger.lifetimeTotals(), userName, counts, processes, interfaces, health },
      }),
    );
  }
  if (ctx.history) {
    const { createFlowRecorder } = await import('../history/recorder.js');
    const h = config.history;
    out.push(
      await createFlowRecorder(ctx.history, {
        activeTimeoutMs: h.active_timeout * 1000,
        idleTimeoutMs: h.idle_timeout * 1000,
        flushIntervalMs: h.flush_interval * 1000,
        retention: { maxAgeMs: h.max_age_days * 86_400_000, maxBytes: h.max_size_mb * 2 ** 20 },
        logger: logger('history'),
      }),
    );
  }
  return out;
}
