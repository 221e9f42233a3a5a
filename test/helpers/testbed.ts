// A test bed on this machine: test users, and a network namespace behind a veth pair
// that stands in for "the outside" (198.18.0.0/15 and 2001:db8::/32, never routed).
// Everything created here is removed by teardown().
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const TRAFFIC = fileURLToPath(new URL('./traffic.py', import.meta.url));

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

export interface Netns {
  name: string;
  /** host side of the veth pair */
  hostIf: string;
  hostV4: string;
  nsV4: string;
  hostV6: string;
  nsV6: string;
}

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export function createUser(prefix = 'ubia-t'): TestUser {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  sh('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', name]);
  const uid = Number(sh('id', ['-u', name]).trim());
  const gid = Number(sh('id', ['-g', name]).trim());
  return { name, uid, gid };
}

export function removeUser(u: TestUser): void {
  try {
    sh('userdel', [u.name]);
  } catch {
    /* already gone */
  }
}

/** A namespace with one veth pair; subnet picks 198.18.<subnet>.0/24 and 2001:db8:<subnet>::/64. */
export function createNetns(subnet: number): Netns {
  const tag = randomBytes(2).toString('hex');
  const ns: Netns = {
    name: `ubia-t-${tag}`,
    hostIf: `ubth${tag}`,
    hostV4: `198.18.${subnet}.1`,
    nsV4: `198.18.${subnet}.2`,
    hostV6: `2001:db8:${subnet}::1`,
    nsV6: `2001:db8:${subnet}::2`,
  };
  const nsIf = `ubtn${tag}`;
  sh('ip', ['netns', 'add', ns.name]);
  sh('ip', ['link', 'add', ns.hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
  sh('ip', ['link', 'set', nsIf, 'netns', ns.name]);
  sh('ip', ['addr', 'add', `${ns.hostV4}/24`, 'dev', ns.hostIf]);
  sh('ip', ['-6', 'addr', 'add', `${ns.hostV6}/64`, 'dev', ns.hostIf, 'nodad']);
  sh('ip', ['link', 'set', ns.hostIf, 'up']);
  const inNs = (...a: string[]) => sh('ip', ['netns', 'exec', ns.name, ...a]);
  inNs('ip', 'addr', 'add', `${ns.nsV4}/24`, 'dev', nsIf);
  inNs('ip', '-6', 'addr', 'add', `${ns.nsV6}/64`, 'dev', nsIf, 'nodad');
  inNs('ip', 'link', 'set', nsIf, 'up');
  inNs('ip', 'link', 'set', 'lo', 'up');
  return ns;
}

export function removeNetns(ns: Netns): void {
  try {
    sh('ip', ['link', 'del', ns.hostIf]);
  } catch {
    /* went with the namespace */
  }
  try {
    sh('ip', ['netns', 'del', ns.name]);
  } catch {
    /* already gone */
  }
}

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
