// Quota policy without root (issue 14): the [[quota]] rules as the config loader reads
// them, which rule governs a user, calendar periods in several time zones, thresholds,
// limits, grants and resets over a real ledger file, and what survives a restart. The
// kernel's enforcer is a recording stand-in here; test/quota.test.ts runs the real one.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { parseBytes, parseRate } from '../src/core/units.js';
import { zeroCounters } from '../src/core/counters.js';
import { Ledger, UNATTRIBUTED_UID } from '../src/ledger/ledger.js';
import { openQuotaStore } from '../src/ledger/quota-store.js';
import type { QuotaEnforcer, QuotaVerdict } from '../src/kernel/quota.js';
import type { Scope } from '../src/kernel/types.js';
import { periodAt } from '../src/agent/quota/period.js';
import { compileRules, ruleFor, type Membership } from '../src/agent/quota/rules.js';
import { createQuotaEngine, type QuotaAlert } from '../src/agent/quota/engine.js';
import { createQuotaAlerts, hookEnvironment, terminalMessage } from '../src/agent/quota/alerts.js';
import { tellTerminals, terminalsOf } from '../src/agent/quota/terminals.js';
import { spawn } from 'node:child_process';
import { userInfo } from 'node:os';
import { createInterface } from 'node:readline';

const dir = mkdtempSync(join(tmpdir(), 'ubia-quota-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const host = { groupExists: (g: string) => ['students', 'staff'].includes(g), userExists: (u: string) => ['alice', 'bob'].includes(u) };
const rulesOf = (toml: string) => parseConfig(toml, 'ubia.toml', host).quota;
const problems = (toml: string) => {
  try {
    parseConfig(toml, 'ubia.toml', host);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
};

describe('[[quota]] in the configuration', () => {
  it('reads rules with their defaults, and the hooks table of the rule above it', () => {
    const rules = rulesOf(`[[quota]]\nmatch = "group:students"\nlimit = "50GiB"\n\n[[quota]]\nmatch = "user:alice"\nperiod = "day"\nlimit = "10MiB"\ndirection = "rx"\nwarn_at = [50]\naction = "throttle:8Mbit"\nexempt = ["198.18.0.0/15", "local-services"]\n[quota.hooks]\nexec = "/usr/local/sbin/quota-notify"\ntimeout = 3\n`);
    expect(rules).toEqual([
      { match: 'group:students', period: 'month', limit: '50GiB', direction: 'both', warn_at: [80, 100], action: 'alert', exempt: [], terminals: false },
      { match: 'user:alice', period: 'day', limit: '10MiB', direction: 'rx', warn_at: [50], action: 'throttle:8Mbit', exempt: ['198.18.0.0/15', 'local-services'], terminals: false, hooks: { exec: '/usr/local/sbin/quota-notify', timeout: 3, retries: 2 } },
    ]);
    const [students, alice] = compileRules(rules);
    expect(students!.limitBytes).toBe(50 * 2 ** 30);
    expect(alice!.action).toEqual({ kind: 'throttle', bytesPerSecond: 1_000_000 });
    expect(alice!.hooks).toEqual({ exec: '/usr/local/sbin/quota-notify', timeoutMs: 3000, retries: 2 });
  });

  it('stops on an invalid rule with file:line: key and what is allowed', () => {
    const toml = `[agent]\npoll_interval = 1\n\n[[quota]]\nmatch = "all"\nlimit = "1GiB"\n\n[[quota]]\nmatch = "users:bob"\nlimit = "5 parsecs"\naction = "throttle:fast"\nexempt = ["10.0.0.0/33"]\nperoid = "day"\n`;
    const p = problems(toml);
    expect(p).toContainEqual(expect.stringMatching(/^ubia\.toml:9: quota\.1\.match: expected "user:NAME", "uid:A-B"/));
    expect(p).toContainEqual(expect.stringMatching(/^ubia\.toml:10: quota\.1\.limit: expected a byte count with its unit/));
    expect(p).toContainEqual(expect.stringMatching(/^ubia\.toml:11: quota\.1\.action: expected "alert", "block" or "throttle:RATE"/));
    expect(p).toContainEqual(expect.stringMatching(/^ubia\.toml:12: quota\.1\.exempt\.0: expected CIDR blocks/));
    expect(p).toContainEqual(expect.stringMatching(/^ubia\.toml:13: quota\.1\.peroid: unknown key in \[quota\.1\]; allowed keys: match, period, limit/));
  });

  it('refuses a user or group the host does not know, a match given twice, and enforced rules with different exemptions', () => {
    expect(problems(`[[quota]]\nmatch = "user:carol"\nlimit = "1GiB"\n`)).toEqual([expect.stringMatching(/^ubia\.toml:2: quota\.0\.match: no user "carol" exists on this host/)]);
    expect(problems(`[[quota]]\nmatch = "group:nobody-here"\nlimit = "1GiB"\n`)).toEqual([expect.stringMatching(/^ubia\.toml:2: quota\.0\.match: no group "nobody-here" exists/)]);
    expect(problems(`[[quota]]\nmatch = "all"\nlimit = "1GiB"\n[[quota]]\nmatch = "all"\nlimit = "2GiB"\n`)).toEqual([expect.stringMatching(/^ubia\.toml:5: quota\.1\.match: rule 1 already has match = "all"/)]);
    const p = problems(`[[quota]]\nmatch = "all"\nlimit = "1GiB"\naction = "block"\nexempt = ["local-services"]\n[[quota]]\nmatch = "group:staff"\nlimit = "2GiB"\naction = "throttle:2Mbit"\n`);
    expect(p).toEqual([expect.stringMatching(/^ubia\.toml:6: quota\.1\.exempt: differs from rule 1's exempt list: the kernel keeps one exemption list/)]);
  });

  it('reads byte counts and rates in binary, SI and tc(8) units', () => {
    expect([parseBytes('50GiB'), parseBytes('1.5 GB'), parseBytes('10MiB'), parseBytes('1000'), parseBytes('5 XB'), parseBytes('')]).toEqual([50 * 2 ** 30, 1.5e9, 10 * 2 ** 20, 1000, undefined, undefined]);
    expect([parseRate('8Mbit'), parseRate('500kbit'), parseRate('1MiB/s'), parseRate('8'), parseRate('fast')]).toEqual([1_000_000, 62_500, 2 ** 20, undefined, undefined]);
  });
});

describe('the rule that governs a user', () => {
  const who: Membership = {
    name: (uid) => ({ 1000: 'alice', 1001: 'bob', 1002: 'carol', 3000: 'dave' })[uid] ?? String(uid),
    primaryGroup: (uid) => (uid === 1001 ? 500 : 100),
    group: (name) => ({ students: { gid: 500, members: ['carol'] }, staff: { gid: 600, members: ['alice'] } })[name],
  };
  const rules = compileRules(
    rulesOf(`[[quota]]\nmatch = "all"\nlimit = "1GiB"\n[[quota]]\nmatch = "group:students"\nlimit = "2GiB"\n[[quota]]\nmatch = "uid:1000-1001"\nlimit = "3GiB"\n[[quota]]\nmatch = "user:alice"\nlimit = "4GiB"\n[[quota]]\nmatch = "group:staff"\nlimit = "5GiB"\n`),
  );
  const ruleOf = (uid: number) => ruleFor(uid, rules, who)?.match;

  it('is the most specific match: user > uid range > group > all, the first among equals', () => {
    expect(ruleOf(1000)).toBe('user:alice'); // also in uid:1000-1001 and group:staff
    expect(ruleOf(1001)).toBe('uid:1000-1001'); // also in group:students (primary group)
    expect(ruleOf(1002)).toBe('group:students'); // a listed member
    expect(ruleOf(3000)).toBe('all');
    expect(ruleFor(3000, rules.slice(1), who)).toBeUndefined();
  });
});

describe('calendar periods in local time', () => {
  const savedTz = process.env.TZ;
  afterEach(() => {
    process.env.TZ = savedTz;
  });
  const at = (tz: string, iso: string) => {
    process.env.TZ = tz;
    return Date.parse(iso);
  };
  const iso = (ms: number) => new Date(ms).toISOString();

  it('a day is 23 or 25 hours across DST changes (Berlin spring, New York autumn)', () => {
    const spring = periodAt('day', at('Europe/Berlin', '2026-03-29T12:00:00Z'));
    expect([iso(spring.startMs), iso(spring.endMs)]).toEqual(['2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z']);
    const autumn = periodAt('day', at('America/New_York', '2026-11-01T12:00:00Z'));
    expect([iso(autumn.startMs), iso(autumn.endMs)]).toEqual(['2026-11-01T04:00:00.000Z', '2026-11-02T05:00:00.000Z']);
  });

  it('a day whose midnight does not exist starts at the first instant that does (Santiago springs forward at 00:00)', () => {
    const d = periodAt('day', at('America/Santiago', '2026-09-06T15:00:00Z'));
    expect([iso(d.startMs), iso(d.endMs)]).toEqual(['2026-09-06T04:00:00.000Z', '2026-09-07T03:00:00.000Z']);
  });

  it('months end on the right day (leap February, December into the next year) in zones off the whole hour', () => {
    const feb = periodAt('month', at('Asia/Kathmandu', '2028-02-29T20:00:00Z')); // already 1 March there
    expect([iso(feb.startMs), iso(feb.endMs)]).toEqual(['2028-02-29T18:15:00.000Z', '2028-03-31T18:15:00.000Z']);
    const leap = periodAt('month', at('Asia/Kathmandu', '2028-02-29T12:00:00Z'));
    expect([iso(leap.startMs), iso(leap.endMs)]).toEqual(['2028-01-31T18:15:00.000Z', '2028-02-29T18:15:00.000Z']);
    const dec = periodAt('month', at('Australia/Lord_Howe', '2026-12-31T13:00:00Z')); // 1 January 00:00 there (+11)
    expect([iso(dec.startMs), iso(dec.endMs)]).toEqual(['2026-12-31T13:00:00.000Z', '2027-01-31T13:00:00.000Z']);
    const utc = periodAt('month', at('UTC', '2026-12-31T23:59:59.999Z'));
    expect([iso(utc.startMs), iso(utc.endMs)]).toEqual(['2026-12-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z']);
  });

  it('a week runs from Monday 00:00 to the next Monday, across a DST change', () => {
    const w = periodAt('week', at('Europe/Berlin', '2026-03-29T20:00:00Z')); // Sunday evening
    expect([iso(w.startMs), iso(w.endMs)]).toEqual(['2026-03-22T23:00:00.000Z', '2026-03-29T22:00:00.000Z']);
    const monday = periodAt('week', at('Europe/Berlin', '2026-03-29T22:00:00Z')); // Monday 00:00
    expect(iso(monday.startMs)).toBe('2026-03-29T22:00:00.000Z');
  });
});

/** A recording stand-in for the kernel's enforcer: what the engine asked, and what it holds. */
function recordingEnforcer(held: QuotaVerdict[] = []) {
  const verdicts = new Map(held.map((v) => [v.uid, v]));
  const calls: string[] = [];
  const e: QuotaEnforcer = {
    set: (v) => void (verdicts.set(v.uid, v), calls.push(`set ${v.uid} ${v.action.kind}`)),
    clear: (uid) => void (verdicts.delete(uid), calls.push(`clear ${uid}`)),
    list: () => [...verdicts.values()],
    setExemptions: (x) => void calls.push(`exempt ${x.cidrs.join(',')} ${x.localServices}`),
    attached: () => verdicts.size > 0,
    close: () => undefined,
  };
  return { e, calls, verdicts };
}

const MiB = 2 ** 20;
const ALICE = 1000;
const BOB = 1001;
const who = { name: (uid: number) => (uid === ALICE ? 'alice' : uid === BOB ? 'bob' : String(uid)), primaryGroup: () => 100, group: () => undefined, uidOf: (n: string) => (n === 'alice' ? ALICE : undefined) };

function harness(file: string, toml: string, nowMs: number, held: QuotaVerdict[] = []) {
  const ledger = new Ledger(join(dir, file));
  const alerts: QuotaAlert[] = [];
  const enforcer = recordingEnforcer(held);
  const engine = createQuotaEngine({ ledger, store: openQuotaStore(ledger.db), who, enforcer: enforcer.e, alert: (a) => alerts.push(a), logger: pino({ level: 'silent' }) });
  engine.setRules(compileRules(parseConfig(toml, 'ubia.toml').quota), nowMs);
  /** what the accounting does with a delta: the ledger books it, the engine hears it */
  const book = (t: number, uid: number, scope: Scope, rx: number, tx: number) => {
    const d = { ...zeroCounters(), rxBytes: rx, txBytes: tx };
    ledger.add(t, uid, scope, d);
    engine.booked(t, uid, scope, d);
  };
  return { ledger, engine, alerts, enforcer, book, fired: () => alerts.map((a) => `${a.user} ${a.percent}`) };
}

describe('thresholds, limits and what survives a restart', () => {
  const savedTz = process.env.TZ;
  afterEach(() => {
    process.env.TZ = savedTz;
  });
  const DAY_RULE = `[[quota]]\nmatch = "all"\nperiod = "day"\nlimit = "10MiB"\naction = "block"\nexempt = ["local-services"]\n`;

  it('alerts each threshold once, several at once when a jump passes them; loopback does not count; blocks at 100 %', () => {
    process.env.TZ = 'Europe/Berlin';
    const t0 = Date.parse('2026-06-10T08:00:00Z');
    const h = harness('thresholds.db', DAY_RULE, t0);
    expect(h.enforcer.calls).toEqual(['exempt  true']);
    h.book(t0 + 1000, ALICE, 'loopback', 50 * MiB, 50 * MiB);
    h.book(t0 + 1000, ALICE, 'external', 5 * MiB, 2 * MiB);
    h.engine.check(t0 + 1000);
    expect(h.fired()).toEqual([]);
    h.book(t0 + 2000, ALICE, 'external', 1 * MiB, 0);
    h.engine.check(t0 + 2000);
    h.book(t0 + 3000, ALICE, 'external', 0, 0.1 * MiB);
    h.engine.check(t0 + 3000);
    expect(h.fired()).toEqual(['alice 80']);
    expect(h.alerts[0]).toMatchObject({ uid: ALICE, usedBytes: 8 * MiB, limitBytes: 10 * MiB, percent: 80 });
    h.book(t0 + 4000, ALICE, 'external', 0, 1.9 * MiB);
    h.book(t0 + 4000, BOB, 'external', 20 * MiB, 0);
    h.engine.check(t0 + 4000);
    expect(h.fired()).toEqual(['alice 80', 'alice 100', 'bob 80', 'bob 100']);
    expect(h.enforcer.calls.slice(1)).toEqual(['set 1000 block', 'set 1001 block']);
    expect(h.enforcer.verdicts.get(ALICE)!.untilMs).toBe(Date.parse('2026-06-10T22:00:00Z'));
    h.book(t0 + 5000, ALICE, 'external', MiB, MiB);
    h.engine.check(t0 + 5000);
    expect(h.alerts).toHaveLength(4);
    expect(h.enforcer.calls).toHaveLength(3);
    expect(h.engine.status(ALICE, t0 + 5000)).toMatchObject({ state: 'blocked', usedBytes: 12 * MiB, alerted: [80, 100], match: 'all', period: { kind: 'day' } });
    h.ledger.close();
  });

  it('counts only the rule\'s direction', () => {
    const t0 = Date.parse('2026-06-10T08:00:00Z');
    const h = harness('direction.db', `[[quota]]\nmatch = "all"\nlimit = "10MiB"\ndirection = "tx"\n`, t0);
    h.book(t0 + 1000, ALICE, 'external', 100 * MiB, 7 * MiB);
    h.engine.check(t0 + 1000);
    expect(h.engine.status(ALICE, t0 + 1000)).toMatchObject({ usedBytes: 7 * MiB, state: 'ok' });
    h.ledger.close();
  });

  it('after a restart (usage back from the ledger, the unflushed part replayed): no alert twice, the kernel verdict adopted', () => {
    process.env.TZ = 'UTC';
    const t0 = Date.parse('2026-06-10T08:00:00Z');
    const first = harness('restart.db', DAY_RULE, t0);
    first.book(t0 + 1000, ALICE, 'external', 11 * MiB, 0);
    first.engine.check(t0 + 1000);
    expect(first.fired()).toEqual(['alice 80', 'alice 100']);
    // traffic without a local owner is booked under a uid of its own: nobody's quota
    first.ledger.add(t0 + 1000, UNATTRIBUTED_UID, 'external', { ...zeroCounters(), rxBytes: 50 * MiB });
    first.ledger.flush('boot', Buffer.alloc(0), t0 + 1500);
    // booked but never flushed: a kill -9 now; the kernel still counts it, so the next
    // start books it again as part of its first delta
    first.book(t0 + 2000, ALICE, 'external', MiB, 0);
    first.engine.check(t0 + 2000);
    const held = first.enforcer.e.list();
    first.ledger.close();

    const second = harness('restart.db', DAY_RULE, t0 + 60_000, held);
    expect(second.enforcer.calls).toEqual(['exempt  true']); // adopted, not set again
    expect(second.engine.status(ALICE, t0 + 60_000)).toMatchObject({ usedBytes: 11 * MiB, state: 'blocked', alerted: [80, 100] });
    expect(second.engine.statuses(t0 + 60_000).map((q) => q.uid)).toEqual([ALICE]);
    second.book(t0 + 61_000, ALICE, 'external', MiB, 0);
    second.engine.check(t0 + 61_000);
    expect(second.alerts).toEqual([]);
    expect(second.engine.status(ALICE, t0 + 61_000)!.usedBytes).toBe(12 * MiB);
    second.ledger.close();
  });

  it('a period end starts the count over and lifts the verdict; the new period alerts again', () => {
    process.env.TZ = 'America/New_York';
    const t0 = Date.parse('2026-06-10T03:58:00Z'); // 23:58 local
    const h = harness('rollover.db', DAY_RULE, t0);
    h.book(t0, ALICE, 'external', 10 * MiB, 0);
    h.engine.check(t0);
    expect(h.engine.status(ALICE, t0)!.state).toBe('blocked');
    const midnight = Date.parse('2026-06-10T04:00:00Z');
    h.book(midnight + 100, ALICE, 'external', 3 * MiB, 0); // booked in the new day's first minute
    h.engine.check(midnight + 100);
    expect(h.enforcer.calls.at(-1)).toBe('clear 1000');
    expect(h.engine.status(ALICE, midnight + 100)).toMatchObject({ usedBytes: 3 * MiB, state: 'ok', alerted: [], period: { startMs: midnight } });
    h.book(midnight + 1000, ALICE, 'external', 6 * MiB, 0);
    h.engine.check(midnight + 1000);
    expect(h.fired()).toEqual(['alice 80', 'alice 100', 'alice 80']);
    h.ledger.close();
  });

  it('grant lifts a block for this period, reset starts it over (both kept across a restart); a verdict without a quota is lifted at the start', () => {
    process.env.TZ = 'UTC';
    const t0 = Date.parse('2026-06-10T08:00:00Z');
    const h = harness('adjust.db', DAY_RULE, t0);
    h.book(t0, ALICE, 'external', 12 * MiB, 0);
    h.engine.check(t0);
    expect(h.engine.grant(ALICE, 5 * MiB, 0, t0 + 10)).toMatchObject({ usedBytes: 12 * MiB, limitBytes: 15 * MiB, grantedBytes: 5 * MiB, state: 'warned' });
    expect(h.enforcer.calls.at(-1)).toBe('clear 1000');
    h.book(t0 + 20, ALICE, 'external', 3 * MiB, 0);
    h.engine.check(t0 + 20);
    expect(h.engine.status(ALICE, t0 + 20)!.state).toBe('blocked');
    expect(h.fired()).toEqual(['alice 80', 'alice 100']); // once per period, grants or not
    expect(h.engine.reset(ALICE, 0, t0 + 30)).toMatchObject({ usedBytes: 0, limitBytes: 10 * MiB, grantedBytes: 0, state: 'ok', alerted: [] });
    expect(h.enforcer.calls.at(-1)).toBe('clear 1000');
    h.book(t0 + 40, ALICE, 'external', 9 * MiB, 0);
    h.engine.check(t0 + 40);
    expect(h.fired()).toEqual(['alice 80', 'alice 100', 'alice 80']);
    expect(h.engine.grant(BOB + 1, MiB, 0, t0 + 40)).toMatchObject({ uid: BOB + 1, grantedBytes: MiB }); // "all" covers any uid
    h.ledger.flush('boot', Buffer.alloc(0), t0 + 50);
    h.ledger.close();

    const stale = { uid: 4242, action: { kind: 'block' as const }, untilMs: t0 + 3_600_000 };
    const again = harness('adjust.db', DAY_RULE.replace('match = "all"', 'match = "user:alice"'), t0 + 60_000, [stale]);
    expect(again.engine.status(ALICE, t0 + 60_000)).toMatchObject({ usedBytes: 9 * MiB, alerted: [80], state: 'warned' });
    expect(again.enforcer.calls).toContain('clear 4242');
    expect(again.engine.status(4242, t0 + 60_000)).toBeUndefined();
    expect(again.engine.statuses(t0 + 60_000).map((s) => s.user)).toEqual(['alice']);
    again.ledger.close();
  });
});

describe('alert hooks', () => {
  const logLines: string[] = [];
  const logger = pino({ level: 'debug' }, new Writable({ write: (c: Buffer, _e, cb) => void (logLines.push(c.toString()), cb()) }));
  const script = (name: string, body: string) => {
    const f = join(dir, name);
    writeFileSync(f, `#!/bin/sh\n${body}\n`);
    chmodSync(f, 0o755);
    return f;
  };
  const alertFor = (exec: string, timeoutMs = 5000, retries = 2): QuotaAlert => ({
    uid: ALICE,
    user: 'alice',
    usedBytes: 8 * MiB,
    limitBytes: 10 * MiB,
    percent: 80,
    period: { kind: 'day', startMs: Date.parse('2026-06-10T00:00:00Z'), endMs: Date.parse('2026-06-11T00:00:00Z') },
    rule: { ...compileRules(rulesOf(`[[quota]]\nmatch = "all"\nlimit = "10MiB"\naction = "throttle:2Mbit"\n`))[0]!, hooks: { exec, timeoutMs, retries } },
  });
  const until = async (what: () => boolean) => {
    for (let i = 0; i < 200 && !what(); i++) await new Promise((r) => setTimeout(r, 25));
    expect(what()).toBe(true);
  };

  it('runs the hook with the alert in its environment (and nothing of the agent\'s), and logs the alert', async () => {
    const out = join(dir, 'env.out');
    const alerts = createQuotaAlerts(logger, 10);
    alerts.alert(alertFor(script('env.sh', `env > ${out}`)));
    await until(() => readFileSync(out, { flag: 'a+', encoding: 'utf8' }).includes('ACTION='));
    const env = Object.fromEntries(readFileSync(out, 'utf8').trim().split('\n').map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]));
    expect(env).toMatchObject({ USER: 'alice', UID: '1000', USED: String(8 * MiB), LIMIT: String(10 * MiB), PERCENT: '80', PERIOD: 'day', PERIOD_END: '2026-06-11T00:00:00.000Z', ACTION: 'throttle:2Mbit' });
    expect(Object.keys(env).filter((k) => !(k in hookEnvironment(alertFor('x'))) && k !== 'PWD' && k !== 'SHLVL' && k !== '_')).toEqual([]);
    expect(logLines.some((l) => /"msg":"quota: alice reached 80 % of 10 MiB this day \(8\.0 MiB used\)"/.test(l))).toBe(true);
    alerts.close();
  });

  it('retries a failing hook a bounded number of times, each failure logged, and kills one past its timeout', async () => {
    const count = join(dir, 'runs.out');
    const alerts = createQuotaAlerts(logger, 10);
    logLines.length = 0;
    alerts.alert(alertFor(script('fail.sh', `echo run >> ${count}; echo broken >&2; exit 3`), 5000, 2));
    await until(() => logLines.some((l) => l.includes('gave up')));
    expect(readFileSync(count, 'utf8').trim().split('\n')).toHaveLength(3);
    expect(logLines.filter((l) => l.includes('will try again'))).toHaveLength(2);
    expect(logLines.find((l) => l.includes('gave up'))).toMatch(/"why":"exit 3".*"stderr":"broken\\n"/);
    logLines.length = 0;
    const started = Date.now();
    alerts.alert(alertFor(script('hang.sh', 'sleep 30'), 200, 0));
    await until(() => logLines.some((l) => l.includes('gave up')));
    expect(Date.now() - started).toBeLessThan(3000);
    expect(logLines.find((l) => l.includes('gave up'))).toMatch(/killed after its 0\.2 s timeout/);
    alerts.close();
  });
});

describe('alerts on the user\'s terminals', () => {
  /** a utmp record (utmp(5), 384 bytes) of a login session */
  const utmpRecord = (type: number, line: string, user: string) => {
    const r = Buffer.alloc(384);
    r.writeInt16LE(type, 0);
    r.write(line, 8, 32, 'latin1');
    r.write(user, 44, 32, 'latin1');
    return r;
  };

  it('finds the user\'s terminals in utmp, writes to those that accept messages and are theirs', async () => {
    // a real pseudo-terminal: python holds the master and prints what arrives
    const py = spawn('/usr/bin/python3', ['-c', 'import os,pty,select,sys\nm,s=pty.openpty()\nprint(os.ttyname(s),flush=True)\nr,_,_=select.select([m],[],[],10)\nprint(os.read(m,4096).decode() if r else "",flush=True)\nr,_,_=select.select([m],[],[],1)\nprint("second:"+(os.read(m,4096).decode() if r else ""),flush=True)']);
    const out = createInterface({ input: py.stdout! });
    const lines: string[] = [];
    out.on('line', (l) => lines.push(l));
    while (lines.length === 0) await new Promise((r) => setTimeout(r, 20));
    const tty = lines[0]!;
    const me = userInfo();
    const utmp = join(dir, 'utmp');
    writeFileSync(utmp, Buffer.concat([utmpRecord(7, tty.slice('/dev/'.length), me.username), utmpRecord(8, 'pts/99', me.username), utmpRecord(7, 'pts/98', 'someone-else'), utmpRecord(7, '../etc/passwd', me.username)]));
    expect(terminalsOf(me.username, utmp)).toEqual([tty]);
    expect(terminalsOf(me.username, join(dir, 'no-utmp'))).toEqual([]);
    chmodSync(tty, 0o620); // mesg y (the mount's default mode may be 0600)
    expect(tellTerminals(me.uid + 1, [tty], 'not yours')).toEqual([]);
    expect(tellTerminals(me.uid, [tty], 'ubia: hello')).toEqual([tty]);
    chmodSync(tty, 0o600); // mesg n
    expect(tellTerminals(me.uid, [tty], 'declined')).toEqual([]);
    await new Promise((r) => py.on('close', r)); // its output read to the end
    expect(lines.slice(1).map((l) => l.trim()).filter(Boolean)).toEqual(['ubia: hello', 'second:']);
  });

  it('says how much, of what, until when, and what happens at the limit', () => {
    const rule = compileRules(rulesOf(`[[quota]]\nmatch = "all"\nperiod = "day"\nlimit = "10MiB"\naction = "throttle:2Mbit"\n`))[0]!;
    const text = terminalMessage({ uid: 1000, user: 'alice', usedBytes: 8 * MiB, limitBytes: 10 * MiB, percent: 80, period: { kind: 'day', startMs: 0, endMs: new Date(2026, 5, 11).getTime() }, rule });
    expect(text).toBe('ubia: alice, you have used 80 % of your network quota: 8.0 MiB of 10 MiB this day, which ends 2026-06-11 00:00:00; at 100 % your network traffic is held to 2Mbit until then.');
  });
});
