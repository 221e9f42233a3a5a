// Test-side helpers around the exporter: a ledger database in a temp dir, a logger whose
// lines the test can read, and a config pointing at a local peer.
import Database from 'better-sqlite3';
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { diameterConfigSchema, type DiameterConfig, type DiameterConfigInput } from '../../../src/export/diameter/config.js';
import type { ExporterStatus, UsageInterval, UserUsage } from '../../../src/export/types.js';
import { REALM } from './harness.js';

export const CLIENT_HOST = 'agent';
export const CLIENT_IDENTITY = `${CLIENT_HOST}.${REALM}`;

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export function memoryLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

export function tempLedger(): { db: Database.Database; path: string; dir: string; dispose(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'ubia-diam-ledger-'));
  const path = join(dir, 'ledger.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  return {
    db,
    path,
    dir,
    dispose() {
      if (db.open) db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A stand-in for /run/systemd/users (systemd-logind's per-user state files, whose STATE=
 *  line sd_uid_get_state(3) reads), in logind's own format: these machines run no logind. */
export function fakeLogind(): { dir: string; set(uid: number, state: string | undefined): void; dispose(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'ubia-logind-'));
  return {
    dir,
    set(uid, state) {
      const file = join(dir, String(uid));
      if (state === undefined) rmSync(file, { force: true });
      else writeFileSync(file, `# This is private data. Do not parse.\nNAME=u${uid}\nSTATE=${state}\nSTOPPING=no\n`);
    },
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function testConfig(port: number, overrides: Partial<DiameterConfigInput> = {}): DiameterConfig {
  return diameterConfigSchema.parse({
    servers: [{ host: '127.0.0.1', port }],
    origin_realm: REALM,
    destination_realm: REALM,
    watchdog_interval: 5,
    reconnect_interval: 2,
    request_timeout: 3,
    interim_interval: 300,
    idle_timeout: 300,
    ...overrides,
  });
}

export function usage(startMs: number, endMs: number, users: Partial<UserUsage>[]): UsageInterval {
  return {
    startMs,
    endMs,
    users: users.map((u) => ({ uid: 0, user: '', rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxPayloadBytes: 0, txPayloadBytes: 0, ...u })),
  };
}

// ---- the exporter in a child process (for kill -9) ------------------------------------

const ROOT = new URL('../../../', import.meta.url).pathname;

/** Compiles the exporter and agent-child.ts with the project's compiler into build/ (inside
 *  the repo so node_modules resolve); returns the script path and a cleanup. */
export function compileAgentChild(): { script: string; dispose(): void } {
  mkdirSync(join(ROOT, 'build'), { recursive: true });
  const outDir = mkdtempSync(join(ROOT, 'build', 'diameter-child-'));
  execFileSync(
    join(ROOT, 'node_modules/.bin/tsc'),
    ['--outDir', outDir, '--rootDir', ROOT, '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2023',
      '--strict', '--skipLibCheck', '--types', 'node', join(ROOT, 'test/peers/freediameter/agent-child.ts')],
    { stdio: 'inherit' },
  );
  return { script: join(outDir, 'test/peers/freediameter/agent-child.js'), dispose: () => rmSync(outDir, { recursive: true, force: true }) };
}

export interface AgentChild {
  usage(interval: UsageInterval): void;
  /** as the agent after saving its checkpoint */
  checkpointed(): void;
  status(): Promise<ExporterStatus>;
  close(): Promise<void>;
  kill9(): Promise<void>;
  stderr(): string;
}

export function spawnAgentChild(script: string, ledgerPath: string, config: DiameterConfig, hostName: string): AgentChild {
  const child = spawn(process.execPath, [script, ledgerPath, JSON.stringify(config), hostName], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const waiting: ((o: Record<string, unknown>) => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => waiting.shift()?.(JSON.parse(l) as Record<string, unknown>));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ask = (cmd: object): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      if (child.exitCode !== null) return reject(new Error(`agent child exited:\n${err}`));
      waiting.push(resolve);
      child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    });
  return {
    usage: (interval) => void child.stdin!.write(`${JSON.stringify({ usage: interval })}\n`),
    checkpointed: () => void child.stdin!.write(`${JSON.stringify({ checkpointed: true })}\n`),
    status: async () => (await ask({ status: true })).status as ExporterStatus,
    async close() {
      await ask({ close: true });
      await exited;
    },
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    stderr: () => err,
  };
}
