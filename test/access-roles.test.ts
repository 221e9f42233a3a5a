// Who sees what, per role, on a real agent with real users, real unix groups and real
// traffic: each caller runs the CLI under setpriv with the groups the kernel then reports
// (SO_PEERCRED, SO_PEERGROUPS), and sees exactly their rows.
//   physics = bob's own user group (bob: primary group), alice: listed member
//   lead:   manager of physics, gets the leads group only in the kernel (setpriv --groups)
//   aud:    auditor, listed in the audit group (setpriv --init-groups)
//   carol:  nobody special
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, startAgent, type AgentProcess } from './support/agent.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { waitFor } from './support/wait.js';
import type { FlowQueryResult, FlowsResult, ProcsResult, ReportResult, StatusResult, UsersResult } from '../src/control/protocol.js';
import { createPseudonyms } from '../src/privacy/pseudonyms.js';

let bed: Testbed;
let agent: AgentProcess;
let alice: TestUser, bob: TestUser, carol: TestUser, lead: TestUser, aud: TestUser;
const leads = `ubia-t-lead-${process.pid}`;
const audit = `ubia-t-aud-${process.pid}`;
const gid = (group: string) => Number(execFileSync('getent', ['group', group], { encoding: 'utf8' }).split(':')[2]);

beforeAll(async () => {
  bed = await createTestbed('roles', { users: 5, sinkPort: 9031 });
  [alice, bob, carol, lead, aud] = bed.users as [TestUser, TestUser, TestUser, TestUser, TestUser];
  execFileSync('groupadd', [leads]);
  execFileSync('groupadd', [audit]);
  execFileSync('usermod', ['-aG', bob.name, alice.name]);
  execFileSync('usermod', ['-aG', audit, aud.name]);
  agent = await startAgent({
    dir: bed.dir,
    pinDir: bed.pinDir,
    extra: `\n[[control.roles]]\nrole = "manager"\ngroup = "${leads}"\nsees_group = "${bob.name}"\n\n[[control.roles]]\nrole = "auditor"\ngroup = "${audit}"\n\n[history]\nenabled = true\nflush_interval = 1\nidle_timeout = 1\n`,
  });
});

afterAll(async () => {
  await agent?.stop();
  await bed?.remove();
  spawnSync('groupdel', [leads]);
  spawnSync('groupdel', [audit]);
});

type Groups = 'none' | 'init' | { gids: number[] };

/** The CLI as `user`, with no supplementary groups, those of the group database, or the given ones. */
function as(user: TestUser | undefined, groups: Groups, args: string[]) {
  const priv = user
    ? [
        'setpriv',
        `--reuid=${user.uid}`,
        `--regid=${user.gid}`,
        ...(groups === 'none' ? ['--clear-groups'] : groups === 'init' ? ['--init-groups'] : [`--groups=${groups.gids.join(',')}`]),
      ]
    : [];
  const argv = [...priv, process.execPath, CLI, '--socket', agent.socket, ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function json<T>(user: TestUser | undefined, groups: Groups, args: string[]): T {
  const r = as(user, groups, [...args, '--json']);
  if (r.code !== 0) throw new Error(`ubia ${args.join(' ')} as ${user?.name ?? 'root'} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

const uidsOf = (rows: { uid: number }[]) => [...new Set(rows.map((r) => r.uid))].sort((a, b) => a - b);
const sorted = (...users: TestUser[]) => users.map((u) => u.uid).sort((a, b) => a - b);
const testUids = () => new Set([alice, bob, carol, lead, aud].map((u) => u.uid));
/** rows of the test users only (root and system services may have traffic too) */
const ours = <T extends { uid: number }>(rows: T[]) => rows.filter((r) => testUids().has(r.uid));

describe('access roles', () => {
  let procsSeen: Record<string, ProcsResult> = {};

  beforeAll(async () => {
    const send = (u: TestUser, host: string) => sinkTraffic(u, { host, port: bed.sink.port, send: 3_000_000, reply: 500_000, ms: 5000 });
    const traffic = Promise.all([send(alice, bed.net.peerV4), send(bob, bed.net.peerV6), send(carol, bed.net.peerV4)]);
    // while the three send: everyone's view of the processes
    await waitFor('the three senders among the processes', () => {
      const all = json<ProcsResult>(undefined, 'none', ['procs']);
      return [alice, bob, carol].every((u) => all.processes.some((p) => p.uid === u.uid && p.txBytes > 0)) ? true : undefined;
    });
    procsSeen = {
      root: json(undefined, 'none', ['procs']),
      carol: json(carol, 'none', ['procs']),
      lead: json(lead, { gids: [gid(leads)] }, ['procs']),
      aud: json(aud, 'init', ['procs']),
    };
    await traffic;
    await waitFor('the traffic in the ledger', () => {
      const u = json<UsersResult>(undefined, 'none', ['users']);
      return [alice, bob, carol].every((t) => u.users.some((r) => r.uid === t.uid && r.rxPayloadBytes >= 500_000)) ? true : undefined;
    });
  }, 60_000);

  it('root sees everyone and the unattributed total', () => {
    const u = json<UsersResult>(undefined, 'none', ['users']);
    expect(uidsOf(ours(u.users))).toEqual(sorted(alice, bob, carol));
    expect(u.unattributed).not.toBeNull();
    expect(uidsOf(ours(procsSeen.root!.processes))).toEqual(sorted(alice, bob, carol));
  });

  it('anyone else sees only their own rows, and is told so when asking for another', () => {
    const u = json<UsersResult>(carol, 'none', ['users']);
    expect(uidsOf(u.users)).toEqual([carol.uid]);
    expect(u.unattributed).toBeNull();
    expect(uidsOf(procsSeen.carol!.processes)).toEqual([carol.uid]);
    const f = json<FlowsResult>(carol, 'none', ['flows']);
    expect(uidsOf([...f.active, ...f.ended])).toEqual([carol.uid]);

    const other = as(carol, 'none', ['procs', '-u', alice.name]);
    expect(other.code).toBe(1);
    expect(other.stderr).toBe("ubia: you can see only your own usage (or your role's)\n");
    expect(other.stdout).toBe('');
    const nosuch = as(carol, 'none', ['procs', '-u', 'nosuch-user-xyz']);
    expect(nosuch.code).toBe(1);
    expect(nosuch.stderr).toBe('ubia: no such user: nosuch-user-xyz\n');
  });

  it('a group manager sees the members of the group they manage (primary and listed), nobody else', () => {
    const groups = { gids: [gid(leads)] };
    const u = json<UsersResult>(lead, groups, ['users']);
    expect(uidsOf(u.users)).toEqual(sorted(alice, bob));
    expect(u.users.map((r) => r.user).sort()).toEqual([alice.name, bob.name].sort());
    expect(u.unattributed).toBeNull();
    expect(uidsOf(procsSeen.lead!.processes)).toEqual(sorted(alice, bob));
    const f = json<FlowsResult>(lead, groups, ['flows']);
    expect(uidsOf([...f.active, ...f.ended])).toEqual(sorted(alice, bob));
    expect(f.ended.some((r) => r.uid === alice.uid && r.remoteAddress.endsWith(bed.net.peerV4))).toBe(true);

    expect(uidsOf(json<FlowsResult>(lead, groups, ['flows', '-u', alice.name]).ended)).toEqual([alice.uid]);
    const outside = as(lead, groups, ['flows', '-u', carol.name]);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toMatch(/you can see only your own usage \(or your role's\)/);
    const top = as(lead, groups, ['top', '--once']);
    expect(top.stdout).toContain(alice.name);
    expect(top.stdout).toContain(bob.name);
    expect(top.stdout).not.toContain(carol.name);
  });

  it('the role follows the groups the process really has: without them the manager sees only themselves', () => {
    expect(json<UsersResult>(lead, 'none', ['users']).users).toEqual([]);
  });

  it('an auditor sees every user under stable pseudonyms and Crypto-PAn addresses, never who or where', () => {
    const raw = as(aud, 'init', ['users', '--json']);
    expect(raw.code).toBe(0);
    const u = JSON.parse(raw.stdout) as UsersResult;
    const again = json<UsersResult>(aud, 'init', ['users']);
    const rootView = json<UsersResult>(undefined, 'none', ['users']);
    // none by their real uid or name
    for (const r of u.users) {
      expect(r.uid).toBeGreaterThanOrEqual(2 ** 32);
      expect(r.user).toMatch(/^anon-[0-9a-f]{10}$/);
    }
    expect(again.users.map((r) => [r.uid, r.user])).toEqual(u.users.map((r) => [r.uid, r.user]));
    expect(u.unattributed).not.toBeNull();
    const texts = [raw.stdout, JSON.stringify(procsSeen.aud), as(aud, 'init', ['flows', '--json']).stdout, as(aud, 'init', ['top', '--once']).stdout];
    for (const t of texts) {
      for (const who of [alice, bob, carol]) {
        expect(t).not.toContain(who.name);
        expect(t).not.toMatch(new RegExp(`"uid": ${who.uid}\\b`));
      }
    }
    // remote ends anonymised (local ones are the host's own addresses and stay)
    const all = json<FlowsResult>(aud, 'init', ['flows']);
    const real = [bed.net.peerV4, bed.net.peerV6, bed.net.hostV4, bed.net.hostV6];
    for (const r of [...all.active, ...all.ended]) expect(real.some((a) => r.remoteAddress.endsWith(a))).toBe(false);
    // the figures are the real ones, under the pseudonym the agent's secret gives each sender
    const p = createPseudonyms(readFileSync(join(bed.dir, 'auditor.key')));
    for (const who of [alice, bob, carol]) {
      const { uid, user, ...figures } = rootView.users.find((r) => r.uid === who.uid)!;
      expect(u.users.find((r) => r.user === p.user(who.uid))).toEqual({ uid: p.uid(who.uid), user: p.user(who.uid), ...figures });
    }
    const hers = { uid: p.uid(alice.uid), user: p.user(alice.uid) };
    // every process row pseudonymous, pids too
    expect(procsSeen.aud!.processes.length).toBeGreaterThanOrEqual(3);
    for (const p of procsSeen.aud!.processes) {
      expect(p.uid).toBeGreaterThanOrEqual(2 ** 32);
      if (p.pid !== 0) expect(p.pid).toBeGreaterThanOrEqual(2 ** 32);
    }
    // flows: prefix-preserving, so alice's and carol's flows to the one IPv4 peer share an address
    const f = json<FlowsResult>(aud, 'init', ['flows', '-u', hers.user]);
    expect(f.ended.length).toBeGreaterThan(0);
    expect(new Set(f.ended.map((r) => r.uid))).toEqual(new Set([hers.uid]));
    const v4 = f.ended.find((r) => r.family === 4 || r.remoteAddress.includes('.'))!;
    const carols = all.ended.filter((r) => r.uid !== hers.uid && r.remoteAddress === v4.remoteAddress);
    expect(carols.length).toBeGreaterThan(0);
    // a real name would say whose rows they are
    const byName = as(aud, 'init', ['procs', '-u', alice.name]);
    expect(byName.code).toBe(1);
    expect(byName.stderr).toMatch(/as an auditor you name users by pseudonym/);
  });

  it('the flow history answers each caller for the users in their sight; an auditor is refused', async () => {
    const managing = { gids: [gid(leads)] };
    const history = ['flows', '--since', '1h', '--group-by', 'uid'];
    const uidsIn = (user: TestUser | undefined, groups: Groups, more: string[] = []) =>
      ours(json<FlowQueryResult>(user, groups, [...history, ...more]).rows.map((r) => ({ uid: r.uid as number }))).map((r) => r.uid).sort((a, b) => a - b);
    await waitFor('the three senders in the flow history', () => uidsIn(undefined, 'none').length === 3, 30_000);
    expect(uidsIn(undefined, 'none')).toEqual(sorted(alice, bob, carol));
    expect(uidsIn(lead, managing)).toEqual(sorted(alice, bob));
    expect(uidsIn(lead, managing, ['-u', alice.name])).toEqual([alice.uid]);
    // the filter cannot reach past the scope
    expect(uidsIn(lead, managing, ['--where', `user ${carol.name}`])).toEqual([]);
    const outside = as(lead, managing, [...history, '-u', carol.name]);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toMatch(/you can see only your own usage \(or your role's\)/);
    expect(uidsIn(carol, 'none')).toEqual([carol.uid]);
    const audited = as(aud, 'init', history);
    expect(audited.code).toBe(1);
    expect(audited.stderr).toMatch(/the flow history names real users and addresses, which an auditor does not see/);
  });

  it('a report answers each caller for the users in their sight; an auditor sees pseudonyms, anonymised networks, no paths', async () => {
    const managing = { gids: [gid(leads)] };
    const report = (user: TestUser | undefined, groups: Groups, more: string[] = []) => json<ReportResult>(user, groups, ['report', '--since', '1h', ...more]);
    const uidsIn = (r: ReportResult) => uidsOf(ours(r.users));
    await waitFor('the three senders in the flow history', () => uidsIn(report(undefined, 'none', ['--by', 'remote'])).length === 3, 30_000);
    expect(uidsIn(report(undefined, 'none', ['--by', 'process']))).toEqual(sorted(alice, bob, carol));
    expect(uidsIn(report(lead, managing, ['--by', 'process']))).toEqual(sorted(alice, bob));
    expect(report(carol, 'none', ['--by', 'port']).users.map((u) => u.uid)).toEqual([carol.uid]);
    const outside = as(lead, managing, ['report', '--since', '1h', '-u', carol.name]);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toMatch(/you can see only your own usage \(or your role's\)/);

    const audited = report(aud, 'init', ['--by', 'remote']);
    const shown = JSON.stringify(audited);
    for (const who of [alice, bob, carol]) expect(shown).not.toContain(who.name);
    const peer24 = `${bed.net.peerV4.replace(/\.\d+$/, '.0')}/24`;
    expect(shown).not.toContain(peer24);
    const p = createPseudonyms(readFileSync(join(bed.dir, 'auditor.key')));
    // alice and carol sent to the one IPv4 peer: one anonymised network for both
    const nets = (uid: number) => audited.users.find((u) => u.uid === p.uid(uid))!.rows.filter((r) => r.note === undefined && String(r.key.network).endsWith('/24')).map((r) => r.key.network);
    expect(nets(alice.uid).filter((n) => nets(carol.uid).includes(n)).length).toBeGreaterThan(0);
    const processes = report(aud, 'init', ['--by', 'process']);
    expect(processes.users.flatMap((u) => u.rows).every((r) => r.key.exe === null)).toBe(true);
  });

  it('interface figures (host-wide) only for root and the auditor', () => {
    const interfaces = (user: TestUser | undefined, groups: Groups) => (json<StatusResult>(user, groups, ['status']).meter.interfaces ?? []).length;
    expect(interfaces(undefined, 'none')).toBeGreaterThan(0);
    expect(interfaces(aud, 'init')).toBeGreaterThan(0);
    expect(interfaces(lead, { gids: [gid(leads)] })).toBe(0);
    expect(interfaces(carol, 'none')).toBe(0);
    expect(json<StatusResult>(lead, { gids: [gid(leads)] }, ['status']).agent.you).toEqual({ uid: lead.uid, admin: false, role: 'manager' });
  });

  it('the auditor secret was created next to the ledger, root-only', () => {
    const st = statSync(join(bed.dir, 'auditor.key'));
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(0);
    expect(st.size).toBe(32);
  });
});
