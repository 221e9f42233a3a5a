// Quotas end to end (issue 14): the built agent, real traffic of test users to a network
// namespace, the kernel's enforcement. Alerts: a user sending 12 MiB against 10 MiB gets
// the 80 % and 100 % alerts once each (the exec hook appends a line per run), within two
// polls of the crossing, and not again after kill -9 and a restart; grant and reset are
// admins'. Roll-over: the agent's wall clock (libfaketime, a constant offset: time still
// runs) is put just before midnight, so a "day" ends during the test; the block it set
// lifts at the period's end. Block: new TCP connections fail with EPERM while another user
// and an exempted destination go on. Throttle: 8 Mbit/s over 10 s, each direction.
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, startAgent, type AgentProcess, type AgentSetup } from './support/agent.js';
import { createTestbed, removeMeter, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic, traffic } from './support/traffic.js';
import { sleep, waitFor } from './support/wait.js';
import { startReceiver, type Receiver } from './support/otlp-receiver.js';
import type { QuotaResult, QuotaRow } from '../src/control/protocol.js';

const MiB = 2 ** 20;
const POLL_S = 0.5;
const FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

let bed: Testbed;
let alice: TestUser, bob: TestUser;

beforeAll(async () => {
  bed = await createTestbed('quota', { users: 2, sinkPort: 9061 });
  [alice, bob] = bed.users as [TestUser, TestUser];
});
afterAll(async () => {
  await bed?.remove();
});

/** A directory of its own for one agent (the users' CLI reaches its socket). */
const agentDir = (name: string) => {
  const d = mkdtempSync(join(bed.dir, name));
  chmodSync(d, 0o755);
  return d;
};

/** Agents on a meter of their own, stopped and removed after the describe that made them:
 *  another meter's counters would all be new to their empty ledgers, and count in the
 *  period. */
function ownMeter(name: string) {
  let agent: AgentProcess | undefined;
  const pinDir = () => `${bed.pinDir}-${name}`;
  afterAll(async () => {
    await agent?.stop();
    await removeMeter(pinDir());
  });
  return async (dir: string, s: Omit<AgentSetup, 'dir' | 'pinDir'>) => (agent = await startAgent({ ...s, dir, pinDir: pinDir() }));
}

/** A hook that appends one line per run: its environment, and when it ran (ms). */
function hook(dir: string): { exec: string; lines(): string[] } {
  const out = join(dir, 'hook.out');
  const exec = join(dir, 'hook.sh');
  writeFileSync(exec, `#!/bin/sh\necho "$PERCENT $USED $LIMIT $USER $UID $PERIOD $ACTION $PERIOD_END $(date +%s%3N)" >> ${out}\n`);
  chmodSync(exec, 0o755);
  return { exec, lines: () => (existsSync(out) ? readFileSync(out, 'utf8').trim().split('\n').filter(Boolean) : []) };
}

const quotaOf = (agent: AgentProcess, user: string): QuotaRow | undefined => {
  const r = cli(agent.socket, ['quota', '-u', user, '--json']);
  if (r.code !== 0) throw new Error(`ubia quota exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as QuotaResult).quotas[0];
};
const send = (u: TestUser, bytes: number, reply = 0, ms = 50) => sinkTraffic(u, { host: bed.net.peerV4, port: bed.sink.port, send: bytes, reply, ms });
/** one TCP connect() as the user: the errno name it failed with, or null */
const connectError = (u: TestUser, host = bed.net.peerV4) => traffic<{ error: string | null }>(['try-send', 'tcp', host, String(bed.sink.port)], { user: u }).error;

describe('alerts: once per threshold and period, across kill -9; grant and reset', () => {
  let agent: AgentProcess;
  let otlp: Receiver;
  let h: ReturnType<typeof hook>;
  let dir: string;
  const start = () =>
    startAgent({
      dir,
      pinDir: bed.pinDir,
      pollInterval: POLL_S,
      extra: `\n[[quota]]\nmatch = "user:${alice.name}"\nperiod = "day"\nlimit = "10MiB"\nwarn_at = [80, 100]\n[quota.hooks]\nexec = "${h.exec}"\ntimeout = 5\n\n[otlp]\nendpoint = "http://127.0.0.1:${otlp.port}/v1/metrics"\nprotocol = "http/json"\ninterval = 1\ntimeout = 1\n`,
    });

  beforeAll(async () => {
    dir = agentDir('alerts-');
    h = hook(dir);
    otlp = await startReceiver();
    agent = await start();
  });
  afterAll(async () => {
    await agent?.stop();
    await otlp?.close();
  });

  it('fires 80 % and 100 % exactly once each, within two polls of the crossing, with the facts in the hook\'s environment', async () => {
    await send(alice, 7 * MiB);
    await waitFor('7 MiB in alice\'s quota', () => (quotaOf(agent, alice.name)?.usedBytes ?? 0) >= 7 * MiB);
    await sleep(3 * POLL_S * 1000);
    expect(h.lines()).toEqual([]);
    expect(quotaOf(agent, alice.name)).toMatchObject({ state: 'ok', alerted: [], limitBytes: 10 * MiB, match: `user:${alice.name}`, period: 'day' });

    await send(alice, 5 * MiB);
    const sentAt = Date.now();
    await waitFor('two hook runs', () => h.lines().length >= 2);
    // more traffic and polls: no third run
    await send(alice, 512 * 1024);
    await sleep(4 * POLL_S * 1000);
    // the two runs may finish in either order (hooks run side by side)
    const lines = h.lines().map((l) => l.split(' ')).sort((a, b) => Number(a[0]) - Number(b[0]));
    expect(lines.map((l) => l[0])).toEqual(['80', '100']);
    const q = quotaOf(agent, alice.name)!;
    expect(q).toMatchObject({ state: 'warned', alerted: [80, 100] });
    expect(q.usedBytes).toBeGreaterThan(12.5 * MiB); // wire bytes: payload and headers
    for (const [, used, limit, user, uid, period, action, end, at] of lines) {
      expect([limit, user, uid, period, action, end]).toEqual([String(10 * MiB), alice.name, String(alice.uid), 'day', 'alert', q.periodEnd]);
      expect(Number(used)).toBeGreaterThanOrEqual(10 * MiB);
      // the crossing happened during the transfer, at the latest when it ended
      expect(Number(at) - sentAt).toBeLessThan(2 * POLL_S * 1000);
    }
    expect(agent.logs()).toMatch(new RegExp(`"msg":"quota: ${alice.name} reached 80 % of 10 MiB this day`));
  });

  it('exports used and limit per user as OTLP gauges', async () => {
    const gauge = (name: string) =>
      otlp.requests
        .flatMap((r) => JSON.parse(r.body.toString()).resourceMetrics as { scopeMetrics: { metrics: { name: string; gauge?: { dataPoints: { asInt: string; attributes: { key: string; value: { stringValue: string } }[] }[] } }[] }[] }[])
        .flatMap((rm) => rm.scopeMetrics.flatMap((s) => s.metrics))
        .filter((m) => m.name === name)
        .flatMap((m) => m.gauge!.dataPoints)
        .filter((p) => p.attributes.some((a) => a.key === 'user.id' && a.value.stringValue === String(alice.uid)))
        .map((p) => Number(p.asInt));
    await waitFor('quota gauges', () => gauge('ubia.user.quota.used').some((v) => v > 12 * MiB));
    expect(gauge('ubia.user.quota.limit').at(-1)).toBe(10 * MiB);
  });

  it('does not alert again after kill -9 and a restart (usage replayed from the kernel counters)', async () => {
    await agent.kill();
    agent = await start();
    await send(alice, MiB);
    const before = quotaOf(agent, alice.name)!.usedBytes;
    await waitFor('the new MiB counted', () => quotaOf(agent, alice.name)!.usedBytes >= before + MiB);
    await sleep(4 * POLL_S * 1000);
    expect(h.lines().map((l) => l.split(' ')[0]).sort()).toEqual(['100', '80']);
    expect(quotaOf(agent, alice.name)).toMatchObject({ state: 'warned', alerted: [80, 100] });
  });

  it('shows a user their own quota only; grant and reset are refused to non-admins and work for root, logged', async () => {
    const own = cli(agent.socket, ['quota', '--json'], alice);
    expect((JSON.parse(own.stdout) as QuotaResult).quotas.map((q) => q.uid)).toEqual([alice.uid]);
    expect(cli(agent.socket, ['quota'], bob).stdout).toMatch(/no quota applies/);
    const table = cli(agent.socket, ['quota']).stdout.split('\n');
    expect(table[0]).toMatch(/^USER +UID +USED +LIMIT +% +STATE +PERIOD ENDS +ACTION +RULE/);
    expect(table.find((l) => l.startsWith(alice.name))).toMatch(new RegExp(`^${alice.name} +${alice.uid} +1\\d MiB +10 MiB +1\\d\\d % +warned .* \\(day\\) +alert +user:${alice.name}`));
    for (const args of [['quota', 'grant', alice.name, '5MiB'], ['quota', 'reset', alice.name]]) {
      const r = cli(agent.socket, args, alice);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/only root and members of control\.admin_group may grant or reset quotas/);
    }
    expect(cli(agent.socket, ['quota', 'grant', bob.name, '5MiB']).stderr).toMatch(/no \[\[quota\]\] rule applies to/);

    const used = quotaOf(agent, alice.name)!.usedBytes;
    const granted = cli(agent.socket, ['quota', 'grant', alice.name, '5MiB', '--json']);
    expect(granted.code).toBe(0);
    expect((JSON.parse(granted.stdout) as QuotaResult).quotas[0]).toMatchObject({ limitBytes: 15 * MiB, grantedBytes: 5 * MiB });
    expect(quotaOf(agent, alice.name)!.usedBytes).toBeGreaterThanOrEqual(used);
    const reset = cli(agent.socket, ['quota', 'reset', String(alice.uid), '--json']);
    expect((JSON.parse(reset.stdout) as QuotaResult).quotas[0]).toMatchObject({ usedBytes: 0, limitBytes: 10 * MiB, grantedBytes: 0, state: 'ok', alerted: [] });
    // cli() blocks this process: the agent's log lines arrive once the event loop turns
    await waitFor('the grant and the reset in the log', () =>
      new RegExp(`"by":0\\},"msg":"quota: ${5 * MiB} bytes granted to ${alice.name}`).test(agent.logs()) &&
      new RegExp(`"msg":"quota: the period of ${alice.name} starts over"`).test(agent.logs()),
    );
  });
});

describe('enforcement and the period\'s end (the agent\'s clock just before midnight)', () => {
  const start = ownMeter('clock');

  it('blocks new connections with EPERM at 100 % (another user and an exempt address go on), and lifts the block and the count at midnight', async () => {
    const dir = agentDir('rollover-');
    const h = hook(dir);
    // the agent's wall clock: UTC midnight LEAD_S seconds after its start
    const LEAD_S = 40;
    const now = Date.now();
    const offsetS = Math.ceil((Math.ceil(now / 86_400_000) * 86_400_000 - now) / 1000) - LEAD_S;
    const midnightReal = Date.now() + LEAD_S * 1000;
    const agent = await start(dir, {
      pollInterval: POLL_S,
      env: { TZ: 'UTC', LD_PRELOAD: FAKETIME_LIB, FAKETIME: `${offsetS >= 0 ? '+' : ''}${offsetS}s`, FAKETIME_DONT_FAKE_MONOTONIC: '1' },
      extra: `\n[[quota]]\nmatch = "user:${alice.name}"\nperiod = "day"\nlimit = "10MiB"\naction = "block"\nexempt = ["${bed.net.peerV6}/128", "local-services"]\n[quota.hooks]\nexec = "${h.exec}"\n`,
    });
    const before = quotaOf(agent, alice.name);
    expect(before?.periodEnd).toBe(new Date(Math.ceil(now / 86_400_000) * 86_400_000).toISOString());

    await send(alice, 12 * MiB);
    await waitFor('alice blocked', () => quotaOf(agent, alice.name)?.state === 'blocked');
    expect(Date.now()).toBeLessThan(midnightReal - 5000); // else the clock set-up is off, not the quota
    expect(connectError(alice)).toBe('EPERM');
    expect(connectError(bob)).toBeNull();
    expect(connectError(alice, bed.net.peerV6)).toBeNull();
    expect(await send(bob, MiB, MiB)).toBe(MiB);
    expect(h.lines().map((l) => `${l.split(' ')[0]} ${l.split(' ')[6]}`).sort()).toEqual(['100 block', '80 block']);

    await waitFor('the new day', () => quotaOf(agent, alice.name)?.periodStart === before!.periodEnd, (LEAD_S + 20) * 1000, 250);
    const after = quotaOf(agent, alice.name)!;
    expect(after).toMatchObject({ state: 'ok', alerted: [] });
    expect(after.usedBytes).toBeLessThan(MiB);
    expect(connectError(alice)).toBeNull();
    expect(await send(alice, MiB, MiB)).toBe(MiB);
    expect(h.lines()).toHaveLength(2);
  }, 120_000);
});

describe('throttle', () => {
  const start = ownMeter('throttle');

  it('holds the user to 8 Mbit/s (±10 % over 10 s) in each direction, all their sockets together; another user is unaffected', async () => {
    const agent = await start(agentDir('throttle-'), {
      pollInterval: POLL_S,
      extra: `\n[[quota]]\nmatch = "user:${alice.name}"\nlimit = "1MiB"\naction = "throttle:8Mbit"\n`,
    });
    await send(alice, 2 * MiB);
    await waitFor('alice throttled', () => quotaOf(agent, alice.name)?.state === 'throttled');
    const RATE = 1_000_000; // 8 Mbit/s in bytes
    const BYTES = 10 * RATE; // 10 s at the rate
    /** payload bytes per second of one transfer (the rate limits wire bytes: headers are ~3.5 % of a full segment) */
    const rateOf = async (u: TestUser, out: number, back: number) => {
      const t = Date.now();
      await send(u, out, back);
      return (out + back) / ((Date.now() - t) / 1000);
    };
    const tx = await rateOf(alice, BYTES, 0);
    const rx = await rateOf(alice, 0, BYTES);
    // two connections at once share the one bucket per direction
    const t = Date.now();
    await Promise.all([send(alice, BYTES / 2), send(alice, BYTES / 2)]);
    const shared = BYTES / ((Date.now() - t) / 1000);
    const other = await rateOf(bob, BYTES, 0);
    console.log(`throttle 8 Mbit/s: alice tx ${(tx / RATE).toFixed(3)}, rx ${(rx / RATE).toFixed(3)}, two sockets ${(shared / RATE).toFixed(3)} of the rate; bob ${(other / RATE).toFixed(1)}x`);
    for (const r of [tx, rx, shared]) {
      expect(r).toBeGreaterThan(0.9 * RATE);
      expect(r).toBeLessThan(1.1 * RATE);
    }
    expect(other).toBeGreaterThan(3 * RATE);
  }, 120_000);
});
