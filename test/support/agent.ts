// The built agent (dist/, as bin/ubia runs it; the system tier's global set-up builds it)
// as a child process with a temp config, and the CLI as root or as a test user.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectControl } from '../../src/control/client.js';
import type { TestUser } from './testbed.js';
import { VM_SLOWDOWN, waitFor } from './wait.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const UBIA = join(ROOT, 'bin', 'ubia');
const NODE = process.execPath;

export interface AgentProcess {
  dir: string;
  socket: string;
  pinDir: string;
  configFile: string;
  proc: ChildProcess;
  logs(): string;
  /** SIGTERM and wait; resolves with the exit code */
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

export interface AgentSetup {
  dir: string;
  pinDir: string;
  /** extra TOML appended to the generated config (after the [control] keys) */
  extra?: string;
  /** extra keys of the [agent] table */
  agentExtra?: string;
  /** seconds; default 0.2 */
  pollInterval?: number;
  /** control.admin_group */
  adminGroup?: string;
  /** agent.user_capacity (slots of the kernel user table); default the agent's */
  userCapacity?: number;
  /** agent.flow_capacity (entries of the kernel flow table); default the agent's */
  flowCapacity?: number;
  /** agent.meter_mode; default: the built-in default */
  meterMode?: 'default' | 'precise';
  /** the agent's environment beyond the test's own (TZ, LD_PRELOAD of libfaketime) */
  env?: Record<string, string>;
}

export function writeAgentConfig(s: AgentSetup): string {
  const file = join(s.dir, 'ubia.toml');
  writeFileSync(
    file,
    `[agent]\npoll_interval = ${s.pollInterval ?? 0.2}\nflow_interval = 0.2\npin_dir = "${s.pinDir}"\n${s.userCapacity ? `user_capacity = ${s.userCapacity}\n` : ''}${s.flowCapacity ? `flow_capacity = ${s.flowCapacity}\n` : ''}${s.meterMode ? `meter_mode = "${s.meterMode}"\n` : ''}${s.agentExtra ?? ''}\n[ledger]\npath = "${join(s.dir, 'ledger.db')}"\nflush_interval = 1\n\n[control]\nsocket = "${join(s.dir, 'control.sock')}"\nadmin_group = "${s.adminGroup ?? ''}"\n${s.extra ?? ''}`,
  );
  return file;
}

/** Starts `ubia agent --config` and waits until its control socket answers. */
export async function startAgent(s: AgentSetup): Promise<AgentProcess> {
  const configFile = writeAgentConfig(s);
  const socket = join(s.dir, 'control.sock');
  // bin/ubia, as installed hosts run it: its node flags and malloc arenas are part of
  // the agent's memory figures
  const proc = spawn(UBIA, ['agent', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...s.env } });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  // an agent that exits ends the wait at once (waitFor would retry until its deadline)
  const died = exited.then((code) => Promise.reject(new Error(`agent exited ${code}: ${out}`)));
  died.catch(() => {}); // a later exit (stop, kill) is not this wait's failure
  await Promise.race([
    died,
    waitFor(`the agent to serve ${socket}`, async () => {
      if (proc.exitCode !== null) return undefined; // `died` ends the wait with the reason
      const c = await connectControl(socket);
      try {
        await c.request({ op: 'status' }, 1000);
        return true;
      } finally {
        c.close();
      }
    }),
  ]).catch((e: unknown) => {
    proc.kill('SIGKILL'); // not left running with nobody to stop it
    throw e;
  });
  return {
    dir: s.dir,
    socket,
    pinDir: s.pinDir,
    configFile,
    proc,
    logs: () => out,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI, as root or as a test user. */
export function cli(socket: string, args: string[], asUser?: TestUser): CliResult {
  const cmd = asUser
    ? ['setpriv', `--reuid=${asUser.uid}`, `--regid=${asUser.gid}`, '--clear-groups', NODE, CLI, '--socket', socket, ...args]
    : [NODE, CLI, '--socket', socket, ...args];
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', timeout: 30_000 * VM_SLOWDOWN });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Whether `user` (with supplementary `groups`, none by default) can connect to the unix
 *  socket at `path`: 'connected', or the error code (EACCES). */
export function connectAs(user: TestUser, path: string, groups: number[] = []): string {
  const r = spawnSync(
    'setpriv',
    [`--reuid=${user.uid}`, `--regid=${user.gid}`, ...(groups.length ? [`--groups=${groups.join(',')}`] : ['--clear-groups']), NODE, '-e', `require('node:net').createConnection(${JSON.stringify(path)}).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => console.log(e.code))`],
    { encoding: 'utf8', timeout: 10_000 * VM_SLOWDOWN },
  );
  return r.stdout.trim() || r.stderr.trim();
}
