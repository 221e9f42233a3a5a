// A local user attacking the control socket of a real agent (issue 12, items 2–6 and 9):
// a flood of connections that never read nor close, 256 slow-loris connections and
// pipelining without reading, all at once, while root asks `status` and the agent's RSS
// and open fds are watched; out-of-range requests; a ledger of 30,000 uids; > 16 MiB of
// flows; what `status` shows a non-admin; URL credentials; SIGTERM with clients connected.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, cli, connectAs, startAgent, type AgentProcess } from './support/agent.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sleep, waitFor } from './support/wait.js';
import { controlRequest } from '../src/control/client.js';
import { adminSocketOf, type FlowsResult, type StatusResult, type UsersResult } from '../src/control/protocol.js';
import { Ledger } from '../src/ledger/ledger.js';

const ATTACK = join(import.meta.dirname, 'support', 'control-attack.mjs');
const LEDGER_UIDS = 30_000;
/** first uid of the ledger's made-up users: far from any real one */
const FAKE_UID_BASE = 3_000_000;
const SECRET = 'S3cretPass';

let bed: Testbed;
let agent: AgentProcess;
let mallory: TestUser;

/** The ledger holds LEDGER_UIDS users with usage an hour ago, before the agent opens it. */
function seedLedger(path: string): void {
  const ledger = new Ledger(path);
  const at = Date.now() - 3_600_000;
  for (let i = 0; i < LEDGER_UIDS; i++) {
    ledger.add(at, FAKE_UID_BASE + i, 'external', { rxBytes: i + 1, txBytes: 1, rxPackets: 1, txPackets: 1, rxPayloadBytes: 0, txPayloadBytes: 0 });
  }
  ledger.flush('a boot before this one', Buffer.alloc(0));
  ledger.close();
}

beforeAll(async () => {
  bed = await createTestbed('abuse', { users: 1, sinkPort: 9 });
  [mallory] = bed.users as [TestUser];
  seedLedger(join(bed.dir, 'ledger.db'));
  agent = await startAgent({
    dir: bed.dir,
    pinDir: bed.pinDir,
    agentExtra: 'recent_flows = 100000\n',
    extra: `request_timeout = 2\n\n[otlp]\nendpoint = "http://svc:${SECRET}@127.0.0.1:9/v1/metrics"\ninterval = 1\ntimeout = 1\n`,
  });
}, 60_000);

afterAll(async () => {
  await agent?.kill();
  await bed?.remove();
});

interface AttackStats {
  opened: number;
  closedByAgent: number;
  /** connections the agent's full accept queue turned away (EAGAIN), each tried again */
  queueFull: number;
  lorisClosed: number;
  lorisTimeoutReplies: number;
  pipelinedBytes: number;
  badRangeReplies: Record<string, number>;
  stillOpen: number;
}

/** Runs control-attack.mjs as mallory; resolves with its figures. */
function attack(seconds: number, plan: Record<string, number>): Promise<AttackStats> {
  const args = Object.entries(plan).flatMap(([k, v]) => [k, String(v)]);
  const proc = spawn(
    'setpriv',
    [`--reuid=${mallory.uid}`, `--regid=${mallory.gid}`, '--clear-groups', process.execPath, ATTACK, agent.socket, String(seconds), ...args],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => proc.kill('SIGKILL'), (seconds + 30) * 1000);
    // 'close': its stdout read to the end ('exit' may come first)
    proc.on('close', (code) => {
      clearTimeout(t);
      if (code !== 0) return reject(new Error(`the attack script failed (${code}): ${out}`));
      resolve(JSON.parse(out) as AttackStats);
    });
  });
}

const agentRssMiB = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${agent.proc.pid}/status`, 'utf8'))![1]) / 1024;
const agentFds = () => readdirSync(`/proc/${agent.proc.pid}/fd`).length;

async function timed<T>(run: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await run();
  return { ms: performance.now() - t0, value };
}

/** ms a thread has been on a CPU, and runnable but waiting for one: the kernel's schedstat
 *  (ns). The kernel adds a wait when the thread next runs, so a wait begun before a request
 *  and ended during it is counted whole there. */
const schedMs = (schedstat: string) => {
  const [onCpu, waiting] = readFileSync(schedstat, 'utf8').split(' ').map(Number) as [number, number];
  return { onCpu: onCpu / 1e6, waiting: waiting / 1e6 };
};

/** Root's `status` latency (through the admin socket, as the CLI asks as root), the agent's
 *  RSS and fds, sampled every 100 ms until `done` settles. Per answer, from the kernel:
 *  - `loopCpuMs`: how long the agent's main thread (its event loop) ran meanwhile: the work
 *    done before root's answer, for whoever it was;
 *  - `waitedMs`: how long that thread and this test's own were runnable but given no CPU: on
 *    this shared 2-core machine the other load (kernel VMs, other tests) stalls them for
 *    50–370 ms at times, an idle process too (docs/performance.md); what is left,
 *    `ownMs`, is the agent's doing. */
async function watch(done: Promise<unknown>) {
  const figures = { latencies: [] as number[], loopCpuMs: [] as number[], waitedMs: [] as number[], ownMs: [] as number[], sentAtMs: [] as number[], rssMiB: [] as number[], fds: [] as number[] };
  const agentLoop = `/proc/${agent.proc.pid}/task/${agent.proc.pid}/schedstat`;
  const sched = () => ({ loop: schedMs(agentLoop), test: schedMs('/proc/thread-self/schedstat') });
  const start = performance.now();
  let over = false;
  void done.finally(() => (over = true));
  while (!over) {
    figures.sentAtMs.push(performance.now() - start);
    const before = sched();
    const { ms } = await timed(() => controlRequest<StatusResult>(adminSocketOf(agent.socket), { op: 'status' }, 5000, { preferAdmin: false }));
    const after = sched();
    const waitedMs = after.loop.waiting - before.loop.waiting + after.test.waiting - before.test.waiting;
    figures.latencies.push(ms);
    figures.loopCpuMs.push(after.loop.onCpu - before.loop.onCpu);
    figures.waitedMs.push(waitedMs);
    figures.ownMs.push(Math.max(0, ms - waitedMs));
    figures.rssMiB.push(agentRssMiB());
    figures.fds.push(agentFds());
    await sleep(100);
  }
  return figures;
}

const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;

const logLinesAbout = (uid: number, since: number) =>
  agent
    .logs()
    .slice(since)
    .split('\n')
    .filter((l) => l.includes(`"uid":${uid}`));

describe('control socket under attack by a local user', () => {
  it('every attack at once: root\'s status stays < 200 ms (p99; every answer but for CPU waits), RSS < 150 MB, fds bounded; refused and slow clients are closed', async () => {
    const fdsBefore = agentFds();
    const rssBefore = agentRssMiB();
    const logFrom = agent.logs().length;
    const attacking = attack(15, { flood: 2000, loris: 256, pipeline: 16 });
    const seen = await watch(attacking);
    const stats = await attacking;
    const figures = {
      statusMs: { p50: percentile(seen.latencies, 50), p99: percentile(seen.latencies, 99), max: Math.max(...seen.latencies), samples: seen.latencies.length },
      ownMs: { p99: percentile(seen.ownMs, 99), max: Math.max(...seen.ownMs) },
      loopCpuMs: { p99: percentile(seen.loopCpuMs, 99), max: Math.max(...seen.loopCpuMs) },
      // the slow answers: ms since the attack started, latency (the agent's loop on a CPU, waits for one)
      over50ms: seen.latencies.flatMap((ms, i) => (ms > 50 ? [`+${Math.round(seen.sentAtMs[i]!)}: ${Math.round(ms)} (${Math.round(seen.loopCpuMs[i]!)} cpu, ${Math.round(seen.waitedMs[i]!)} waiting)`] : [])),
      loadAverage: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
      rssMiB: { before: rssBefore, max: Math.max(...seen.rssMiB) },
      fds: { before: fdsBefore, max: Math.max(...seen.fds) },
      attacker: stats,
      logLines: logLinesAbout(mallory.uid, logFrom).length,
    };
    console.log(`control abuse figures: ${JSON.stringify(figures)}`);
    expect(figures.statusMs.p99).toBeLessThan(200);
    // issue 12's figure for every answer, but for the time the machine gave the agent or
    // this test no CPU: the agent's own work for the attacker holds its event loop ≤ 36 ms at
    // once (docs/performance.md), while a loaded 2-core host stalls any process for up to 370 ms
    expect(figures.ownMs.max).toBeLessThan(200);
    // what the event loop ran meanwhile, for whoever (the attacker's requests, its accepts
    // and refusals, the agent's own polls and exports, GC): at most 15–32 ms per answer in 7 runs
    expect(figures.loopCpuMs.max).toBeLessThan(100);
    // issue 12's target: 150 MB = 143 MiB (measured 111–118 MiB)
    expect(figures.rssMiB.max).toBeLessThan(143);
    // mallory still holds > 2,000 sockets (the flood never reads, so never sees the close);
    // the agent closed its ends at once: 16 of mallory's connections are served at most
    expect(stats.stillOpen).toBeGreaterThan(2000);
    expect(figures.fds.max).toBeLessThan(fdsBefore + 100);
    // every slow-loris connection was refused or timed out (request_timeout = 2 s)
    expect(stats.lorisClosed).toBe(256);
    // ten lines a minute per uid, and the one that says the rest are dropped
    expect(figures.logLines).toBeLessThanOrEqual(11);
    await waitFor('the attacker\'s connections to be gone', () => (agentFds() <= fdsBefore + 5 ? true : undefined), 10_000);
  }, 60_000);

  it('an out-of-range request is a bad_request, never an internal error in the log', async () => {
    const logFrom = agent.logs().length;
    const stats = await attack(10, { badrange: 2000 });
    expect(stats.badRangeReplies).toEqual({ bad_request: 2000 });
    const log = agent.logs().slice(logFrom);
    expect(log).not.toContain('request failed');
    expect(log).not.toContain('"stack"');
  }, 30_000);

  it('the admin socket is root\'s alone (0600 without admin_group): a user gets EACCES there and answers on the public one', () => {
    const adminSocket = adminSocketOf(agent.socket);
    const st = statSync(adminSocket);
    expect([st.isSocket(), st.mode & 0o777, st.uid, st.gid]).toEqual([true, 0o600, 0, 0]);
    expect(connectAs(mallory, adminSocket)).toBe('EACCES');
    // the CLI tries the admin socket first and falls back without a word
    const r = cli(agent.socket, ['status', '--json'], mallory);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect((JSON.parse(r.stdout) as StatusResult).agent.you).toEqual({ uid: mallory.uid, admin: false, role: 'self' });
  });

  it('`ubia top` as root holds its connection on the admin socket, as a user on the public one', async () => {
    /** the socket path each established connection of the agent was accepted on (ss: the local end) */
    const acceptedOn = () => spawnSync('ss', ['-xnH', 'state', 'established'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.trim().split(/\s+/)[3]);
    const topOf = (asUser?: TestUser) => {
      const args = [CLI, '--socket', agent.socket, 'top', '--json', '-n', '4'];
      return asUser ? spawn('setpriv', [`--reuid=${asUser.uid}`, `--regid=${asUser.gid}`, '--clear-groups', process.execPath, ...args], { stdio: 'ignore' }) : spawn(process.execPath, args, { stdio: 'ignore' });
    };
    for (const [who, path] of [[undefined, adminSocketOf(agent.socket)], [mallory, agent.socket]] as const) {
      const before = acceptedOn().filter((p) => p === path).length;
      const top = topOf(who);
      try {
        await waitFor(`${who ? 'the user' : 'root'}'s top on ${path}`, () => (acceptedOn().filter((p) => p === path).length > before ? true : undefined), 10_000);
      } finally {
        top.kill();
      }
    }
  });

  it('a non-admin\'s status shows the agent\'s health, not paths or host-wide totals; URL credentials are shown to nobody', async () => {
    await waitFor('the OTLP exporter to have failed at least once', async () => {
      const st = await controlRequest<StatusResult>(agent.socket, { op: 'status' });
      return st.exporters.some((e) => e.name === 'otlp' && e.state !== 'ok') ? true : undefined;
    });
    const r = cli(agent.socket, ['status', '--json'], mallory);
    expect(r.code).toBe(0);
    const mine = JSON.parse(r.stdout) as StatusResult;
    expect(mine.agent.you).toEqual({ uid: mallory.uid, admin: false, role: 'self' });
    expect(mine.meter.interfaces).toBeNull();
    expect(mine.meter.health.beyondUserTable).toBeNull();
    expect(mine.meter.health.eventsDropped).toBeTypeOf('number');
    expect([mine.agent.configFile, mine.meter.pinDir, mine.ledger.path, mine.ledger.sizeBytes]).toEqual([null, null, null, null]);
    expect(r.stdout).not.toContain(bed.dir);
    expect(mine.exporters.map((e) => [e.name, e.detail])).toEqual([['otlp', '']]);
    expect(cli(agent.socket, ['status'], mallory).stdout).toMatch(/^agent: {6}running/);

    const root = cli(agent.socket, ['status', '--json']);
    const full = JSON.parse(root.stdout) as StatusResult;
    expect(full.meter.interfaces).not.toBeNull();
    expect(full.meter.health.beyondUserTable).not.toBeNull();
    expect(root.stdout).toContain(bed.dir);
    for (const text of [root.stdout, r.stdout, agent.logs()]) expect(text).not.toContain(SECRET);
    expect(agent.logs()).toContain('http://***@127.0.0.1:9/v1/metrics');
  }, 30_000);

  it(`with ${LEDGER_UIDS} uids in the ledger, \`users\` names only what it shows and never blocks the agent`, async () => {
    // as mallory: only mallory's row, so one look-up at most
    const asMallory = timed(async () => cli(agent.socket, ['users', '--since', '2h', '--json'], mallory));
    const seenMallory = await watch(asMallory);
    const mine = JSON.parse((await asMallory).value.stdout) as UsersResult;
    expect(mine.users.every((u) => u.uid === mallory.uid)).toBe(true);

    // as root: every row, names looked up for 50 ms, the rest as numbers until looked up
    // (a 30,000-row reply is a few hundred ms of work: printed, not held to 200 ms)
    const asRoot = timed(() => controlRequest<UsersResult>(agent.socket, { op: 'users', from: Date.now() - 7_200_000, to: Date.now() }, 30_000));
    const seenRoot = await watch(asRoot);
    const all = await asRoot;
    const fake = all.value.users.filter((u) => u.uid >= FAKE_UID_BASE);
    console.log(
      `users with ${LEDGER_UIDS} uids: mallory's request ${Math.round((await asMallory).ms)} ms (root's status max ${Math.round(Math.max(...seenMallory.latencies))} ms during it); ` +
        `root's request ${Math.round(all.ms)} ms (root's status max ${Math.round(Math.max(...seenRoot.latencies))} ms during it)`,
    );
    expect(fake).toHaveLength(LEDGER_UIDS);
    expect((await asMallory).ms).toBeLessThan(2000); // a CLI start included
    expect(Math.max(...seenMallory.ownMs)).toBeLessThan(200);
  }, 60_000);

  it('`ubia flows` streams a reply past 16 MiB; --limit shows the biggest', async () => {
    // 60,000 UDP sockets, each sending one datagram into the test namespace and closing
    const script = `
import socket
for i in range(60000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b'x' * (1 + i % 100), ('${bed.net.peerV4}', 9))
    s.close()`;
    const sent = spawnSync('setpriv', [`--reuid=${mallory.uid}`, `--regid=${mallory.gid}`, '--clear-groups', '/usr/bin/python3', '-c', script], { timeout: 120_000 });
    expect(sent.status).toBe(0);
    const ended = await waitFor(
      'the ended flows to be booked',
      async () => {
        const r = await controlRequest<FlowsResult>(agent.socket, { op: 'flows', limit: 1 }, 30_000);
        return r.endedTotal >= 50_000 ? r.endedTotal : undefined;
      },
      30_000,
    );
    const full = spawnSync(process.execPath, [CLI, '--socket', agent.socket, 'flows', '--json'], { encoding: 'utf8', timeout: 120_000, maxBuffer: 1 << 30 });
    expect(full.stderr).toBe('');
    const r = JSON.parse(full.stdout) as FlowsResult;
    const bytes = JSON.stringify(r).length;
    console.log(`flows: ${r.ended.length} ended flows, ${(bytes / 2 ** 20).toFixed(1)} MiB of JSON`);
    expect(r.ended.length).toBeGreaterThanOrEqual(ended);
    expect(bytes).toBeGreaterThan(16 * 2 ** 20);

    const top = cli(agent.socket, ['flows', '--limit', '5', '--json']);
    const few = JSON.parse(top.stdout) as FlowsResult;
    expect(few.ended).toHaveLength(5);
    expect(few.endedTotal).toBeGreaterThanOrEqual(ended);
    const biggest = Math.max(...r.ended.map((f) => f.rxBytes + f.txBytes));
    expect(few.ended[0]!.rxBytes + few.ended[0]!.txBytes).toBe(biggest);
    expect(cli(agent.socket, ['flows', '--limit', '5']).stdout).toMatch(/recently ended, newest first: 5 of \d+ \(most bytes first; --limit\)/);
  }, 240_000);

  it('SIGTERM completes while a user holds refused, idle and slow connections', async () => {
    const attacking = attack(20, { flood: 500, loris: 64 });
    await sleep(2000);
    const t0 = Date.now();
    const code = await Promise.race([agent.stop(), sleep(15_000).then(() => 'still running')]);
    console.log(`SIGTERM under attack: exit ${code} after ${Date.now() - t0} ms`);
    expect(code).toBe(0);
    expect(agent.logs()).toContain('agent stopped');
    await attacking;
  }, 60_000);
});
