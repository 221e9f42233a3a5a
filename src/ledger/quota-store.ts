// Quota state that must outlive the agent, in the ledger's database: the thresholds whose
// alert went out (so an alert goes out once per period and user, also across restarts,
// reloads and the replay of usage after a crash) and the admins' adjustments of a period
// (`ubia quota grant` and `reset`). Rows are keyed by the period's start: a new period
// finds none. Each change is its own transaction, committed before the agent acts on it
// (runs the hook, answers the admin): a crash right after can lose an alert's delivery,
// never send it twice.
import type Database from 'better-sqlite3';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS quota_alerts (
  uid INTEGER NOT NULL, period_start_ms INTEGER NOT NULL, percent INTEGER NOT NULL, fired_at_ms INTEGER NOT NULL,
  PRIMARY KEY (uid, period_start_ms, percent)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quota_adjustments (
  uid INTEGER NOT NULL, period_start_ms INTEGER NOT NULL,
  granted_bytes INTEGER NOT NULL, reset_rx_bytes INTEGER NOT NULL, reset_tx_bytes INTEGER NOT NULL,
  PRIMARY KEY (uid, period_start_ms)
) WITHOUT ROWID;
`;

export interface QuotaAdjustment {
  /** extra allowance granted for the period */
  grantedBytes: number;
  /** the period's usage at the last reset: what counts is the usage beyond it */
  resetRxBytes: number;
  resetTxBytes: number;
}

export const NO_ADJUSTMENT: QuotaAdjustment = { grantedBytes: 0, resetRxBytes: 0, resetTxBytes: 0 };

export interface QuotaStore {
  /** the thresholds (percent) already alerted in the period starting at `periodStartMs` */
  fired(uid: number, periodStartMs: number): number[];
  markFired(uid: number, periodStartMs: number, percents: readonly number[], atMs: number): void;
  adjustment(uid: number, periodStartMs: number): QuotaAdjustment;
  /** adds `bytes` to the period's allowance; returns the adjustment now in force */
  grant(uid: number, periodStartMs: number, bytes: number): QuotaAdjustment;
  /** starts the period's count again from `usage`, and its alerts with it */
  reset(uid: number, periodStartMs: number, usage: { rxBytes: number; txBytes: number }): QuotaAdjustment;
  /** drops the rows of periods that started before `ms` */
  forgetBefore(ms: number): void;
}

interface AdjustmentRow {
  granted_bytes: number;
  reset_rx_bytes: number;
  reset_tx_bytes: number;
}

export function openQuotaStore(db: Database.Database): QuotaStore {
  db.exec(SCHEMA);
  const stmt = {
    fired: db.prepare<[number, number], { percent: number }>('SELECT percent FROM quota_alerts WHERE uid = ? AND period_start_ms = ? ORDER BY percent'),
    mark: db.prepare('INSERT OR IGNORE INTO quota_alerts (uid, period_start_ms, percent, fired_at_ms) VALUES (?, ?, ?, ?)'),
    unmark: db.prepare('DELETE FROM quota_alerts WHERE uid = ? AND period_start_ms = ?'),
    adjustment: db.prepare<[number, number], AdjustmentRow>('SELECT granted_bytes, reset_rx_bytes, reset_tx_bytes FROM quota_adjustments WHERE uid = ? AND period_start_ms = ?'),
    grant: db.prepare(
      `INSERT INTO quota_adjustments (uid, period_start_ms, granted_bytes, reset_rx_bytes, reset_tx_bytes) VALUES (?, ?, ?, 0, 0)
       ON CONFLICT DO UPDATE SET granted_bytes = granted_bytes + excluded.granted_bytes`,
    ),
    reset: db.prepare(
      `INSERT INTO quota_adjustments (uid, period_start_ms, granted_bytes, reset_rx_bytes, reset_tx_bytes) VALUES (?, ?, 0, ?, ?)
       ON CONFLICT DO UPDATE SET granted_bytes = 0, reset_rx_bytes = excluded.reset_rx_bytes, reset_tx_bytes = excluded.reset_tx_bytes`,
    ),
    forgetAlerts: db.prepare('DELETE FROM quota_alerts WHERE period_start_ms < ?'),
    forgetAdjustments: db.prepare('DELETE FROM quota_adjustments WHERE period_start_ms < ?'),
  };
  const adjustment = (uid: number, periodStartMs: number): QuotaAdjustment => {
    const r = stmt.adjustment.get(uid, periodStartMs);
    return r ? { grantedBytes: r.granted_bytes, resetRxBytes: r.reset_rx_bytes, resetTxBytes: r.reset_tx_bytes } : NO_ADJUSTMENT;
  };
  return {
    fired: (uid, periodStartMs) => stmt.fired.all(uid, periodStartMs).map((r) => r.percent),
    markFired: db.transaction((uid: number, periodStartMs: number, percents: readonly number[], atMs: number) => {
      for (const p of percents) stmt.mark.run(uid, periodStartMs, p, atMs);
    }),
    adjustment,
    grant: (uid, periodStartMs, bytes) => {
      stmt.grant.run(uid, periodStartMs, bytes);
      return adjustment(uid, periodStartMs);
    },
    reset: db.transaction((uid: number, periodStartMs: number, usage: { rxBytes: number; txBytes: number }) => {
      stmt.reset.run(uid, periodStartMs, usage.rxBytes, usage.txBytes);
      stmt.unmark.run(uid, periodStartMs);
      return adjustment(uid, periodStartMs);
    }),
    forgetBefore: db.transaction((ms: number) => {
      stmt.forgetAlerts.run(ms);
      stmt.forgetAdjustments.run(ms);
    }),
  };
}
