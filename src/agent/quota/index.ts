// The quotas as the agent runs them: the engine over the ledger, its alerts, and the
// kernel's enforcement when the agent has it (opened whenever it is there, so verdicts
// left by rules removed while the agent was stopped are lifted at the start).
import type { Logger } from 'pino';
import type { UbiaConfig } from '../../config/config.js';
import type { Ledger } from '../../ledger/ledger.js';
import { openQuotaStore } from '../../ledger/quota-store.js';
import type { QuotaGauge } from '../../export/types.js';
import { createQuotaAlerts } from './alerts.js';
import { createQuotaEngine, type QuotaEngine } from './engine.js';
import type { QuotaEnforcer } from '../../kernel/quota.js';
import { compileRules, type Membership } from './rules.js';

export interface Quotas {
  engine: QuotaEngine;
  /** puts the configuration's rules in force (start, reload) */
  apply(config: UbiaConfig, nowMs: number): void;
  /** used and limit per user with a quota (the OTLP gauges) */
  gauges(): QuotaGauge[];
  close(): void;
}

export interface QuotaParts {
  ledger: Ledger;
  who: Membership & { uidOf(name: string): number | undefined };
  /** the kernel's enforcement, when the agent has it */
  openEnforcer: (() => QuotaEnforcer) | undefined;
  logger: Logger;
}

export function startQuotas({ ledger, who, openEnforcer, logger }: QuotaParts): Quotas {
  let enforcer: QuotaEnforcer | undefined;
  try {
    enforcer = openEnforcer?.();
  } catch (err) {
    logger.error({ err }, 'quota enforcement could not be loaded into the kernel: block and throttle rules only alert');
  }
  const alerts = createQuotaAlerts(logger);
  const engine = createQuotaEngine({ ledger, store: openQuotaStore(ledger.db), who, enforcer, alert: alerts.alert, logger });
  return {
    engine,
    apply(config, nowMs) {
      // a kernel that refuses a verdict must not stop the metering: the users it concerns
      // are evaluated again when their usage next moves
      try {
        engine.setRules(compileRules(config.quota), nowMs);
      } catch (err) {
        logger.error({ err }, 'quota rules are in force, but putting their verdicts in the kernel failed; retried as usage moves');
      }
    },
    gauges: () => engine.statuses(Date.now()).map((s) => ({ uid: s.uid, user: s.user, usedBytes: s.usedBytes, limitBytes: s.limitBytes })),
    close() {
      alerts.close();
      // the verdicts stay in the kernel with their expiry, like the counters
      enforcer?.close();
    },
  };
}
