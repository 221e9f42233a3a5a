// Known traffic for tests: traffic.py commands run as a test user and/or inside the test
// network namespace, with their JSON results.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const TRAFFIC = fileURLToPath(new URL('./traffic.py', import.meta.url));

export { createNetns, createUser, removeNetns, removeUser, type Netns, type TestUser } from '../../src/bench/testbed.js';
import type { Netns, TestUser } from '../../src/bench/testbed.js';

export interface RunAs {
  user?: TestUser;
  netns?: Netns;
}

function command(args: string[], as: RunAs): [string, string[]] {
  // Debian's python3: a per-user install (pyenv under /root) is not usable by test users
  let argv = ['/usr/bin/python3', TRAFFIC, ...args];
  if (as.user) argv = ['setpriv', `--reuid=${as.user.uid}`, `--regid=${as.user.gid}`, '--clear-groups', ...argv];
  if (as.netns) argv = ['ip', 'netns', 'exec', as.netns.name, ...argv];
  return [argv[0]!, argv.slice(1)];
}

/** Runs a traffic command to completion and returns its JSON result. */
export function traffic<T = Record<string, number>>(args: string[], as: RunAs = {}): T {
  const [cmd, argv] = command(args, as);
  const outText = execFileSync(cmd, argv, { encoding: 'utf8', timeout: 60_000 });
  const lines = outText.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

/** A traffic server running in the background. ready resolves when it listens. */
export interface Server {
  ready: Promise<void>;
  /** the server's last JSON line once it exits */
  done: Promise<Record<string, number>>;
  proc: ChildProcess;
}

export function serve(args: string[], as: RunAs = {}): Server {
  const [cmd, argv] = command(args, as);
  const proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
  let last: Record<string, number> = {};
  let markReady: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    last = JSON.parse(line);
    if ('listening' in last) markReady();
  });
  const done = new Promise<Record<string, number>>((resolve, reject) => {
    proc.on('exit', (code) => {
      clearTimeout(timer);
      markReady();
      if (code === 0) resolve(last);
      else reject(new Error(`traffic server ${args.join(' ')} exited with ${code}`));
    });
  });
  return { ready, done, proc };
}

/** Runs a client against a fresh server and returns both results. */
export async function exchange(server: string[], client: string[], as: { server?: RunAs; client?: RunAs }) {
  const srv = serve(server, as.server);
  await srv.ready;
  const c = traffic(client, as.client);
  const s = await srv.done;
  return { client: c, server: s };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let nextPort = 20000 + (process.pid % 20000);
export const freePort = () => nextPort++;
