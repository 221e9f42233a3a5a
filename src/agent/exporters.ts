// Creates one Exporter per configured exporter section ([ipfix], [diameter], [otlp],
// [prometheus]).
// Each exporter owns its queue/spool/retry; the agent only hands them the same facts.
// Exporter modules are imported only when configured: the OpenTelemetry SDK alone adds
// ~30 MiB of RSS to an agent that does not use it.
import { join } from 'node:path';
import type { Exporter, HealthSource, ProcessUsage } from '../export/types.js';
import type { UbiaConfig } from '../config/config.js';
import type { InterfaceCounters, Scope } from '../kernel/types.js';
import type { Ledger } from '../ledger/ledger.js';
import type { Logger } from 'pino';

export interface ExporterContext {
  logger: Logger;
  ledger: Ledger;
  hostName: string;
  /** directory for exporters' on-disk state (spools), next to the ledger */
  stateDir: string;
  /** the agent's health figures, for exporters that publish them (OTLP, Prometheus) */
  health: HealthSource;
  version: string;
  /** what a scrape reads besides the ledger (Prometheus) */
  userName(uid: number): string;
  counts(scope: Scope): boolean;
  processes(): readonly ProcessUsage[];
  interfaces(): readonly InterfaceCounters[];
}

export async function createExporters(config: UbiaConfig, ctx: ExporterContext): Promise<Exporter[]> {
  const out: Exporter[] = [];
  const logger = (name: string) => ctx.logger.child({ exporter: name });
  if (config.ipfix) {
    const { createIpfixExporter } = await import('../export/ipfix/index.js');
    out.push(createIpfixExporter(config.ipfix, { logger: logger('ipfix'), spoolDir: join(ctx.stateDir, 'ipfix-spool') }));
  }
  if (config.diameter) {
    const { createDiameterAccounting } = await import('../export/diameter/index.js');
    // the Diameter exporter names its own child logger and keeps its outbox in the ledger db
    out.push(createDiameterAccounting(config.diameter, { logger: ctx.logger, db: ctx.ledger.db, hostName: ctx.hostName }));
  }
  if (config.otlp) {
    const { createOtlpExporter } = await import('../export/otlp/index.js');
    out.push(
      createOtlpExporter(config.otlp, { logger: logger('otlp'), hostName: ctx.hostName, version: ctx.version, health: ctx.health, spoolDir: join(ctx.stateDir, 'otlp-spool') }),
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
  return out;
}
