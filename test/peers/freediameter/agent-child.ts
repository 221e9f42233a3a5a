// The Diameter exporter in a process of its own, so a test can kill -9 it and start it
// again on the same ledger. Commands come as JSON lines on stdin:
//   {"usage": UsageInterval} | {"checkpointed": true} | {"status": true} | {"close": true}
// status and close get one JSON line on stdout ({"status": ExporterStatus} or {"closed": true}).
//   node agent-child.js <ledger.db> '<DiameterConfig as JSON>' <hostName>
import Database from 'better-sqlite3';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { createDiameterAccounting } from '../../../src/export/diameter/index.js';
import { diameterConfigSchema } from '../../../src/export/diameter/config.js';

const [ledgerPath, configJson, hostName] = process.argv.slice(2);
if (!ledgerPath || !configJson || !hostName) {
  console.error('usage: agent-child.js <ledger.db> <config JSON> <hostName>');
  process.exit(2);
}
const db = new Database(ledgerPath);
db.pragma('journal_mode = WAL');
// logs go to stderr, replies to stdout
const acct = createDiameterAccounting(diameterConfigSchema.parse(JSON.parse(configJson)), {
  logger: pino({ level: 'info' }, pino.destination(2)),
  db,
  hostName,
});
const reply = (o: unknown): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as { usage?: Parameters<typeof acct.usage>[0]; checkpointed?: true; status?: true; close?: true };
  if (cmd.usage) acct.usage(cmd.usage);
  if (cmd.checkpointed) acct.checkpointed!()?.(); // no transaction around it here: committed at once
  if (cmd.status) reply({ status: acct.status() });
  if (cmd.close) {
    await acct.close();
    db.close();
    reply({ closed: true });
    process.exit(0);
  }
}
