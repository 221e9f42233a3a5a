// Plays systemd for `ubia agent`: a notify socket (abstract and path addresses, as
// sd_notify(3) allows), NOTIFY_SOCKET and WATCHDOG_USEC in the environment, and checks the
// protocol the unit relies on (Type=notify, WatchdogSec=): READY=1 only once the kernel
// programs are attached and the control socket answers, WATCHDOG=1 at least every half
// watchdog interval, no pings while the agent is wedged (SIGSTOP: so systemd would restart
// it), READY=1 again after a SIGHUP reload, STOPPING=1 and exit 0 on SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { controlRequest } from '../src/control/client.js';
import { CLI, writeAgentConfig } from './support/agent.js';
import { removeMeter, tempDir } from './support/testbed.js';
import { sleep, waitFor } from './support/wait.js';

const WATCHDOG_USEC = 2_000_000;
const HALF_MS = WATCHDOG_USEC / 1000 / 2;

/** Node has no AF_UNIX datagram sockets; python3 (a dependency of scripts/setup) binds one
 *  and prints each received datagram's lines, so the test sees exactly what was sent. */
const RECEIVER = `
import socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + addr[1:] if addr.startswith("@") else addr)
print("bound", flush=True)
while True:
    for line in s.recv(65536).decode("utf-8", "replace").split("\\n"):
        if line:
            print(line, flush=True)
`;

interface Message {
  atMs: number;
  text: string;
}

interface ServiceManager {
  address: string;
  messages: Message[];
  stop(): void;
}

async function startNotifySocket(address: string): Promise<ServiceManager> {
  const py = spawn('python3', ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: Message[] = [];
  const lines = createInterface({ input: py.stdout });
  await new Promise<void>((resolve, reject) => {
    py.once('exit', (code) => reject(new Error(`notify socket helper exited ${code}`)));
    lines.once('line', () => resolve());
  });
  lines.on('line', (text) => messages.push({ atMs: Date.now(), text }));
  return { address, messages, stop: () => py.kill('SIGKILL') };
}

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function exitOf(p: ChildProcess): Promise<number | null> {
  return p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise((r) => p.once('exit', (code) => r(code)));
}

interface ManagedAgent {
  manager: ServiceManager;
  agent: ChildProcess;
  pinDir: string;
  socket: string;
  logs(): string;
}

/** `ubia agent` started as systemd would: NOTIFY_SOCKET (abstract unless `pathSocket`),
 *  and WATCHDOG_USEC when `watchdog`; everything is removed after the test. */
async function startManaged(tag: string, o: { pathSocket?: boolean; watchdog?: boolean; pollInterval?: number } = {}): Promise<ManagedAgent> {
  const dir = tempDir('ubia-svc-');
  const pinDir = `/sys/fs/bpf/ubia-svctest-${process.pid}-${tag}`;
  cleanups.push(async () => {
    rmSync(dir, { recursive: true, force: true });
    await removeMeter(pinDir); // its tc filters too, which outlive the pins
  });
  const manager = await startNotifySocket(o.pathSocket ? join(dir, 'notify.sock') : `@ubia-test-${process.pid}-${tag}`);
  cleanups.push(() => manager.stop());
  const env = { ...process.env, NOTIFY_SOCKET: manager.address, ...(o.watchdog ? { WATCHDOG_USEC: String(WATCHDOG_USEC) } : {}) };
  const config = writeAgentConfig({ dir, pinDir, pollInterval: o.pollInterval });
  const agent = spawn(process.execPath, [CLI, 'agent', '--config', config], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  agent.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
  cleanups.push(async () => {
    if (agent.exitCode === null) agent.kill('SIGKILL');
    await exitOf(agent);
  });
  return { manager, agent, pinDir, socket: join(dir, 'control.sock'), logs: () => logs };
}

describe('ubia agent under a service manager', () => {

  for (const kind of ['abstract', 'path'] as const) {
    it(`speaks sd_notify on a ${kind} NOTIFY_SOCKET: READY, WATCHDOG, stall, reload, STOPPING`, async () => {
      const { manager, agent, pinDir, socket, logs } = await startManaged(kind, { pathSocket: kind === 'path', watchdog: true });
      const seen = (text: string, afterMs = 0) => manager.messages.find((m) => m.text === text && m.atMs >= afterMs);
      // READY=1 after attachment: by then the programs are pinned and the agent answers
      const ready = await waitFor('READY=1', () => {
        if (agent.exitCode !== null) return { exited: agent.exitCode };
        return seen('READY=1');
      }, 60_000);
      expect('exited' in ready ? logs() : '', 'the agent exited before READY=1').toBe('');
      expect(readdirSync(pinDir).length).toBeGreaterThan(0);
      const status = await controlRequest<{ meter: { hooks: { active: boolean }[] } }>(socket, { op: 'status' });
      expect(status.meter.hooks.some((h) => h.active)).toBe(true);

      // WATCHDOG=1 at least every WATCHDOG_USEC/2 (sd_watchdog_enabled(3) advises half)
      const watchStart = Date.now();
      await sleep(3 * HALF_MS);
      const pings = manager.messages.filter((m) => m.text === 'WATCHDOG=1' && m.atMs >= watchStart).map((m) => m.atMs);
      expect(pings.length).toBeGreaterThanOrEqual(2);
      const gaps = [pings[0]! - watchStart, ...pings.slice(1).map((t, i) => t - pings[i]!)];
      expect(Math.max(...gaps)).toBeLessThanOrEqual(HALF_MS + 250);

      // a wedged agent (stopped: no test switch in the product) sends no pings for longer
      // than the watchdog interval
      const stallMs = 2 * (WATCHDOG_USEC / 1000);
      const stallAt = Date.now();
      agent.kill('SIGSTOP');
      await sleep(stallMs);
      agent.kill('SIGCONT');
      const stalledPings = manager.messages.filter((m) => m.text === 'WATCHDOG=1' && m.atMs > stallAt + 300 && m.atMs < stallAt + stallMs - 100);
      expect(stalledPings).toEqual([]);
      // and they come back when it runs again
      await waitFor('WATCHDOG=1 after the stall', () => seen('WATCHDOG=1', stallAt + stallMs), 5_000);

      // SIGHUP reloads and reports READY=1 again
      const hupAt = Date.now();
      agent.kill('SIGHUP');
      await waitFor('READY=1 after SIGHUP', () => seen('READY=1', hupAt), 10_000);
      expect(agent.exitCode).toBeNull();

      // SIGTERM: STOPPING=1, then a clean exit well within TimeoutStopSec (30 s)
      const termAt = Date.now();
      agent.kill('SIGTERM');
      expect(await exitOf(agent), logs()).toBe(0);
      expect(Date.now() - termAt).toBeLessThan(10_000);
      expect(seen('STOPPING=1', termAt)).toBeDefined();
    });
  }

  it('pings at half the watchdog interval even when polls are further apart than that', async () => {
    // poll_interval may be up to 60 s while WatchdogSec= is 30 s: the pings must follow
    // $WATCHDOG_USEC, not the poll timer, or systemd kills a healthy agent
    const { manager } = await startManaged('slowpoll', { watchdog: true, pollInterval: (3 * HALF_MS) / 1000 });
    await waitFor('READY=1', () => manager.messages.find((m) => m.text === 'READY=1'), 60_000);
    const start = Date.now();
    await sleep(4 * HALF_MS);
    const pings = manager.messages.filter((m) => m.text === 'WATCHDOG=1' && m.atMs >= start).map((m) => m.atMs);
    const gaps = [(pings[0] ?? Date.now()) - start, ...pings.slice(1).map((t, i) => t - pings[i]!)];
    expect(Math.max(...gaps)).toBeLessThanOrEqual(HALF_MS + 250);
  });

  it('sends STATUS= lines with a one-line summary', async () => {
    const { manager } = await startManaged('status');
    const status = await waitFor('a STATUS= line', () => manager.messages.find((m) => m.text.startsWith('STATUS=')), 30_000);
    // what `systemctl status ubia` shows under "Status:": activity, flows, exporters
    expect(status.text).toMatch(/^STATUS=\d+ users active, in .+\/s, out .+\/s; \d+ flows; (no exporters|exporters ok)$/);
  });
});
