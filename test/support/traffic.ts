// Known traffic for tests and benchmarks: traffic.py commands run as a test user and/or
// inside a test network namespace, with their JSON results.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const TRAFFIC = fileURLToPath(new URL('./traffic.py', import.meta.url));

export interface RunAs {
  user?: { uid: number; gid: number };
  net?: { ns: string };
  /** a cgroup v2 directory (absolute) the command starts in (root moves it there first) */
  cgroup?: string;
}

function command(args: string[], as: RunAs): [string, string[]] {
  // Debian's python3: a per-user install (pyenv under /root) is not usable by test users
  let argv = ['/usr/bin/python3', TRAFFIC, ...args];
  if (as.user) argv = ['setpriv', `--reuid=${as.user.uid}`, `--regid=${as.user.gid}`, '--clear-groups', ...argv];
  if (as.net) argv = ['ip', 'netns', 'exec', as.net.ns, ...argv];
  if (as.cgroup) argv = ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', as.cgroup, ...argv];
  return [argv[0]!, argv.slice(1)];
}

/** Runs a traffic command to completion and returns its JSON result. */
export function traffic<T = Record<string, number>>(args: string[], as: RunAs = {}, timeoutMs = 60_000): T {
  const [cmd, argv] = command(args, as);
  const outText = execFileSync(cmd, argv, { encoding: 'utf8', timeout: timeoutMs });
  const lines = outText.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

/** A traffic command running in the background. ready resolves when it prints a line
 *  with `listening` (servers) or `ready` (clients that set up first), and rejects if it
 *  exits before that. */
export interface TrafficServer {
  ready: Promise<void>;
  /** the command's last JSON line once it exits */
  done: Promise<Record<string, number>>;
  proc: ChildProcess;
}

export function serveTraffic(args: string[], as: RunAs = {}, timeoutMs = 60_000): TrafficServer {
  const [cmd, argv] = command(args, as);
  const proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  let last: Record<string, number> = {};
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let markReady: () => void;
  let notReady: (e: Error) => void;
  const ready = new Promise<void>((resolve, reject) => ((markReady = resolve), (notReady = reject)));
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    last = JSON.parse(line);
    if ('listening' in last || 'ready' in last) markReady();
  });
  const done = new Promise<Record<string, number>>((resolve, reject) => {
    // 'close', not 'exit': exit may come before the last lines of stdout are read (seen in
    // the kernel matrix's slow guests: a stream's result missing, its `ready` line taken
    // for it)
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      const failed = new Error(`traffic.py ${args.join(' ')} exited with ${code ?? signal}: ${err}`);
      notReady(failed);
      if (code === 0) resolve(last);
      else reject(failed);
    });
  });
  // a server killed at clean-up is nobody's failure: only awaiting callers see these
  ready.catch(() => undefined);
  done.catch(() => undefined);
  return { ready, done, proc };
}

/** Runs a client against a fresh server and returns both results. Neither blocks the
 *  event loop: what a test does meanwhile (folds, reads) runs during the traffic. */
export async function exchange(server: string[], client: string[], as: { server?: RunAs; client?: RunAs }) {
  const srv = serveTraffic(server, as.server);
  await srv.ready;
  const c = await serveTraffic(client, as.client).done;
  const s = await srv.done;
  return { client: c, server: s };
}

/** An unconnected UDP socket (sendto() without connect()) sends `count` datagrams of
 *  each peer's size to each of `peers` (udp-echo servers started here on `host`, one per
 *  port) and reads every echo; resolves with the client's result (sent, received, lport). */
export async function udpPeers(host: string, peers: { port: number; size: number }[], count: number, as: { server?: RunAs; client?: RunAs }) {
  const servers = peers.map((p) => serveTraffic(['udp-echo', host, String(p.port), String(count)], as.server));
  await Promise.all(servers.map((s) => s.ready));
  const ports = peers.map((p) => p.port).join(',');
  const sizes = peers.map((p) => p.size).join(',');
  const client = await serveTraffic(['udp-peers', host, ports, String(count), sizes], as.client).done;
  await Promise.all(servers.map((s) => s.done));
  return client;
}

/** Sends `send` bytes to a testbed sink as `user` over `ms` and reads `reply` bytes back;
 *  resolves with the bytes received. Does not block the event loop. */
export async function sinkTraffic(
  user: RunAs['user'],
  o: { host: string; port: number; send: number; reply: number; ms: number; cgroup?: string },
): Promise<number> {
  const run = serveTraffic(['sink-client', o.host, String(o.port), String(o.send), String(o.reply), String(o.ms)], { user, cgroup: o.cgroup }, o.ms + 30_000);
  const result = await run.done;
  if (result.received === undefined) throw new Error(`traffic client printed no result (${JSON.stringify(result)})`);
  return result.received;
}

export type Samples = [number, number][];
export interface StreamResult {
  received?: number;
  sent?: number;
  samples?: Samples;
  /** wall-clock seconds of the samples' start */
  started?: number;
}

/** A stream between a client and a server (a stream-server on `port`) for `seconds`; resolves with the side that
 *  received (its samples: [seconds since start, bytes so far]). `onReady` runs once the
 *  connection carries data. */
export async function stream(
  o: { mode: 'u' | 'd'; seconds: number; client: RunAs; server: RunAs; serverHost: string; connectHost: string; port: number },
  onReady: () => void | Promise<void> = () => undefined,
): Promise<StreamResult> {
  const server = serveTraffic(['stream-server', o.serverHost, String(o.port), String(o.seconds + 5)], o.server, (o.seconds + 30) * 1000);
  await server.ready;
  const client = serveTraffic(['stream', o.connectHost, String(o.port), o.mode, String(o.seconds)], o.client, (o.seconds + 30) * 1000);
  await client.ready;
  await onReady();
  const [c, s] = await Promise.all([client.done, server.done]);
  return (o.mode === 'u' ? s : c) as StreamResult;
}

/** Bytes received between from and to seconds (samples are ~100 ms apart). */
export function bytesBetween(samples: Samples, from: number, to: number): number {
  const at = (t: number) => samples.filter(([s]) => s <= t).at(-1)?.[1] ?? 0;
  return at(to) - at(from);
}

