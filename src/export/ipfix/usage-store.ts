// The per-user usage window in the agent's ledger database, so that it is saved in the
// transaction that saves the agent's checkpoint (see usage.ts): one row, as JSON.
import type BetterSqlite3 from 'better-sqlite3';
import type { UsageState } from './usage.js';

export interface UsageStore {
  load(): UsageState | undefined;
  save(state: UsageState): void;
}

export function openUsageStore(db: BetterSqlite3.Database): UsageStore {
  db.exec('CREATE TABLE IF NOT EXISTS ipfix_usage (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)');
  const get = db.prepare<[], { state: string }>('SELECT state FROM ipfix_usage WHERE id = 1');
  const put = db.prepare('INSERT INTO ipfix_usage (id, state) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state');
  return {
    load() {
      const row = get.get();
      return row && (JSON.parse(row.state) as UsageState);
    },
    save(state) {
      put.run(JSON.stringify(state));
    },
  };
}
