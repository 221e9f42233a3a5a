// Helpers for the real-kernel end-to-end tests: the built agent as a child process with
// a temp config, throw-away test users, a network namespace reached through a veth pair
// (198.18.0.0/15, 2001:db8::/32), a sink server inside it and traffic of known size.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { connectControl } from '../../src/control/client.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const NODE = process.execPath;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** The tests run the built CLI (dist/), as bin/ubia does: rebuild when src/ is newer. */
export function ensureBuilt(): void {
  let built = 0;
  try {
    built = statSync(CLI).mtimeMs;
  } catch {
    built = 0;
  }
  if (built >= newestMtime(join(ROOT, 'src'))) return;
  // type errors elsewhere in the tree do not stop tsc from emitting
  spawnSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', join(ROOT, 'tsconfig.json')], { stdio: 'ignore', timeout: 120_000 });
}

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755); // test users run scripts from here
  return dir;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Inside the kernel matrix's VMs (test/kernel-vm: qemu without KVM) code runs 12–17×
 *  slower, and bounds on waiting for something stretch by this much. */
export const VM_SLOWDOWN = process.env.UBIA_KERNEL_VM ? 20 : 1;

/** Polls `check` every 100 ms until it returns a value, or fails after `timeoutMs`
 *  (times VM_SLOWDOWN). */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs * VM_SLOWDOWN;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      lastErr = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
}

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
  /** extra TOML appended to the generated config */
  extra?: string;
  /** seconds; default 0.2 */
  pollInterval?: number;
  /** control.admin_group */
  adminGroup?: string;
  /** agent.meter_mode; default: the built-in default */
  meterMode?: 'default' | 'precise';
}

export function writeAgentConfig(s: AgentSetup): string {
  const file = join(s.dir, 'ubia.toml');
  writeFileSync(
    file,
    `[agent]\npoll_interval = ${s.pollInterval ?? 0.2}\nflow_interval = 0.2\npin_dir = "${s.pinDir}"\n${s.meterMode ? `meter_mode = "${s.meterMode}"\n` : ''}\n[ledger]\npath = "${join(s.dir, 'ledger.db')}"\nflush_interval = 1\n\n[control]\nsocket = "${join(s.dir, 'control.sock')}"\nadmin_group = "${s.adminGroup ?? ''}"\n${s.extra ?? ''}`,
  );
  return file;
}

/** Starts `ubia agent --config` and waits until its control socket answers. */
export async function startAgent(s: AgentSetup): Promise<AgentProcess> {
  const configFile = writeAgentConfig(s);
  const socket = join(s.dir, 'control.sock');
  const proc = spawn(NODE, [CLI, 'agent', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  // an agent that exits ends the wait at once (waitFor would retry until its deadline)
  const died = exited.then((code) => Promise.reject(new Error(`agent exited ${code}: ${out}`)));
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
  ]);
  died.catch(() => {}); // a later exit (stop, kill) is not this wait's failure
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

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

export function createUser(): TestUser {
  const name = `ubia-t-${randomBytes(3).toString('hex')}`;
  execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', name]);
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  return { name, uid, gid };
}

export function deleteUser(u: TestUser): void {
  // --force: a user whose last test process is still exiting is removed all the same
  spawnSync('userdel', ['--force', u.name], { stdio: 'ignore' });
}

export interface TestNet {
  ns: string;
  /** the host end of the veth pair */
  hostInterface: string;
  hostV4: string;
  peerV4: string;
  hostV6: string;
  peerV6: string;
  remove(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

/** A netns joined to the host by a veth pair; addresses in 198.18.0.0/15 and 2001:db8::/32. */
export function createNet(): TestNet {
  const tag = randomBytes(2).toString('hex');
  const n = parseInt(tag, 16) % 250;
  const ns = `ubia-t-${tag}`;
  const host = `ubt${tag}h`;
  const peer = `ubt${tag}p`;
  const net = {
    ns,
    hostInterface: host,
    hostV4: `198.18.${n}.1`,
    peerV4: `198.18.${n}.2`,
    hostV6: `2001:db8:${tag}::1`,
    peerV6: `2001:db8:${tag}::2`,
    remove() {
      spawnSync('ip', ['link', 'del', host], { stdio: 'ignore' });
      spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    },
  };
  try {
    ip('netns', 'add', ns);
    ip('link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
    ip('link', 'set', peer, 'netns', ns);
    ip('addr', 'add', `${net.hostV4}/24`, 'dev', host);
    ip('-6', 'addr', 'add', `${net.hostV6}/64`, 'dev', host, 'nodad');
    ip('link', 'set', host, 'up');
    ip('-n', ns, 'addr', 'add', `${net.peerV4}/24`, 'dev', peer);
    ip('-n', ns, '-6', 'addr', 'add', `${net.peerV6}/64`, 'dev', peer, 'nodad');
    ip('-n', ns, 'link', 'set', peer, 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  } catch (e) {
    net.remove();
    throw e;
  }
  return net;
}

// The sink: reads an 8-byte reply size, then everything until the client half-closes,
// then answers with that many bytes and closes. Payload sizes are thus known exactly.
const SINK = `
import net from 'node:net';
const server = net.createServer({ allowHalfOpen: true }, (s) => {
  let head = Buffer.alloc(0), want = -1;
  s.on('data', (d) => {
    if (want < 0) { head = Buffer.concat([head, d]); if (head.length >= 8) want = Number(head.readBigUInt64BE(0)); }
  });
  s.on('end', () => {
    const chunk = Buffer.alloc(65536, 7);
    let left = want;
    const pump = () => { while (left > 0) { const n = Math.min(left, chunk.length); left -= n; if (!s.write(chunk.subarray(0, n))) return s.once('drain', pump); } s.end(); };
    pump();
  });
  s.on('error', () => s.destroy());
});
server.listen(Number(process.argv[2]), '::', () => console.log('listening'));
`;

// The client: sends the 8-byte reply size, then \`send\` bytes over \`ms\` milliseconds in
// even chunks, half-closes, and reads the reply to the end.
const TRAFFIC = `
import net from 'node:net';
const [host, port, send, reply, ms] = process.argv.slice(2).map((v, i) => i === 0 ? v : Number(v));
const s = net.connect({ host, port });
let received = 0;
s.on('data', (d) => (received += d.length));
s.on('end', () => { console.log(JSON.stringify({ received })); s.destroy(); });
s.on('connect', async () => {
  const head = Buffer.alloc(8); head.writeBigUInt64BE(BigInt(reply)); s.write(head);
  const steps = Math.max(1, Math.round(ms / 50));
  let left = send;
  for (let i = 0; i < steps; i++) {
    const n = i === steps - 1 ? left : Math.floor(send / steps);
    left -= n;
    if (n > 0 && !s.write(Buffer.alloc(n, 1))) await new Promise((r) => s.once('drain', r));
    await new Promise((r) => setTimeout(r, ms / steps));
  }
  s.end();
});
s.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

export interface Sink {
  port: number;
  stop(): void;
}

export async function startSink(net: TestNet, dir: string, port: number): Promise<Sink> {
  const file = join(dir, 'sink.mjs');
  writeFileSync(file, SINK);
  const proc = spawn('ip', ['netns', 'exec', net.ns, NODE, file, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('sink did not start')), 10_000);
    proc.stdout!.once('data', () => {
      clearTimeout(t);
      resolve();
    });
    proc.once('exit', (c) => reject(new Error(`sink exited ${c}`)));
  });
  return { port, stop: () => proc.kill('SIGKILL') };
}

/** Runs the traffic client as `user`; resolves with the bytes it received. */
export function runTraffic(
  user: TestUser,
  dir: string,
  o: { host: string; port: number; send: number; reply: number; ms: number },
): Promise<number> {
  const file = join(dir, 'traffic.mjs');
  writeFileSync(file, TRAFFIC);
  chmodSync(file, 0o644);
  const proc = spawn(
    'setpriv',
    [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', NODE, file, o.host, String(o.port), String(o.send), String(o.reply), String(o.ms)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error('traffic client timed out'));
    }, o.ms + 30_000);
    proc.on('exit', (code) => {
      clearTimeout(t);
      if (code !== 0) return reject(new Error(`traffic client failed (${code}): ${err}`));
      resolve((JSON.parse(out) as { received: number }).received);
    });
  });
}

/** What the real-agent tests share: a temp dir, a pin dir of their own (never the
 *  system's), throw-away users and, with `sinkPort`, a netns behind a veth with a sink
 *  server in it. `remove()` undoes whatever was made, also after a partial set-up. */
export interface Testbed {
  dir: string;
  pinDir: string;
  users: TestUser[];
  /** present when a sink port was asked for */
  net: TestNet;
  sink: Sink;
  remove(): Promise<void>;
}

export async function createTestbed(name: string, opts: { users: number; sinkPort?: number }): Promise<Testbed> {
  ensureBuilt();
  const undo: (() => void | Promise<void>)[] = [];
  const bed = {
    dir: tempDir(`ubia-${name}-`),
    pinDir: `/sys/fs/bpf/ubia-test-${name}-${process.pid}`,
    users: [] as TestUser[],
    async remove() {
      for (const step of undo.splice(0).reverse()) await step();
    },
  } as Testbed;
  undo.push(() => rmSync(bed.dir, { recursive: true, force: true }), () => removeMeter(bed.pinDir));
  try {
    for (let i = 0; i < opts.users; i++) {
      const u = createUser();
      bed.users.push(u);
      undo.push(() => deleteUser(u));
    }
    if (opts.sinkPort !== undefined) {
      bed.net = createNet();
      undo.push(() => bed.net.remove());
      bed.sink = await startSink(bed.net, bed.dir, opts.sinkPort);
      undo.push(() => bed.sink.stop());
    }
  } catch (e) {
    await bed.remove();
    throw e;
  }
  return bed;
}

/** Detaches and unpins a meter a test agent left in the kernel. */
export async function removeMeter(pinDir: string): Promise<void> {
  const { detachMeter } = await import('../../src/kernel/index.js');
  try {
    detachMeter(pinDir);
  } finally {
    rmSync(pinDir, { recursive: true, force: true });
  }
}
