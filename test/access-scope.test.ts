// The visibility decision (control/scope.ts) with the real pieces around it and no meter:
// test users and unix groups made with useradd/groupadd, callers connecting to a unix
// socket under setpriv (so SO_PEERCRED and SO_PEERGROUPS are what the kernel says), NSS
// through the addon, and the auditor's secret created on disk.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { createUser, removeUser, tempDir, type TestUser } from './support/testbed.js';
import { groupMembers, peerCredentials, primaryGroup, userByName, userName } from '../src/kernel/native.js';
import { createNameCache } from '../src/agent/names.js';
import { scopeOf, type AccessPolicy, type Directory } from '../src/control/scope.js';
import type { Caller } from '../src/control/server.js';
import { createPseudonyms } from '../src/privacy/pseudonyms.js';
import { readOrCreateSecret } from '../src/privacy/secret.js';
import type { RoleConfig } from '../src/config/schema.js';

let dir: string;
let users: TestUser[] = [];
let alice: TestUser, bob: TestUser, carol: TestUser, lead: TestUser, aud: TestUser;
const leads = `ubia-t-lead-${process.pid}`;
const audit = `ubia-t-aud-${process.pid}`;
const admins = `ubia-t-adm-${process.pid}`;
let server: Server;
let socket: string;
let nextCaller: ((c: Caller) => void) | undefined;

const gid = (group: string) => groupMembers(group)!.gid;

beforeAll(async () => {
  dir = tempDir('ubia-scope-');
  users = Array.from({ length: 5 }, () => createUser());
  [alice, bob, carol, lead, aud] = users as [TestUser, TestUser, TestUser, TestUser, TestUser];
  for (const g of [leads, audit, admins]) execFileSync('groupadd', [g]);
  // "physics" is bob's own user group: bob by primary group, alice listed in /etc/group
  execFileSync('usermod', ['-aG', bob.name, alice.name]);
  execFileSync('usermod', ['-aG', audit, aud.name]);
  socket = join(dir, 'peer.sock');
  server = createServer((s) => {
    nextCaller?.(peerCredentials((s as unknown as { _handle: { fd: number } })._handle.fd));
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(socket, r));
  execFileSync('chmod', ['666', socket]);
});

afterAll(() => {
  server?.close();
  for (const u of users) removeUser(u);
  for (const g of [leads, audit, admins]) spawnSync('groupdel', [g]);
  spawnSync('rm', ['-rf', dir]);
});

/** The caller as the kernel reports it when `user` connects with these supplementary groups. */
function connectAs(user: TestUser, groups: 'none' | 'init' | number[]): Promise<Caller> {
  const flags = groups === 'none' ? ['--clear-groups'] : groups === 'init' ? ['--init-groups'] : [`--groups=${groups.join(',')}`];
  const got = new Promise<Caller>((resolve) => (nextCaller = resolve));
  const child = spawn('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, ...flags, process.execPath, '-e', `require('node:net').createConnection(${JSON.stringify(socket)}).on('close', () => process.exit(0))`], { stdio: 'ignore' });
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  child.on('exit', () => clearTimeout(timer));
  return got;
}

const names = createNameCache(userName, 60_000);
const directory: Directory = { name: (uid) => names.name(uid), userByName, primaryGroup, group: groupMembers };

function policy(roles: RoleConfig[], adminGroup = ''): AccessPolicy {
  return { adminGroup, roles, pseudonyms: () => createPseudonyms(readOrCreateSecret(join(dir, 'auditor.key'))) };
}

const roles = (): RoleConfig[] => [
  { role: 'manager', group: leads, sees_group: bob.name },
  { role: 'auditor', group: audit },
];

const seen = (s: { sees(uid: number): boolean }) => users.filter((u) => s.sees(u.uid)).map((u) => u.name);

describe('scopeOf with real credentials and groups', () => {
  it('anyone without a role sees only themselves and no host-wide figures', async () => {
    const s = scopeOf(await connectAs(carol, 'init'), policy(roles()), directory);
    expect(s.role).toBe('self');
    expect(seen(s)).toEqual([carol.name]);
    expect(s.hostWide).toBe(false);
    expect(() => s.userFilter(alice.name)).toThrow("you can see only your own usage (or your role's)");
    expect(() => s.userFilter('nosuch-user-xyz')).toThrow('no such user: nosuch-user-xyz');
    expect(s.userFilter(carol.name)(carol.uid)).toBe(true);
  });

  it('a manager (group from the kernel only) sees themselves and the managed group, by primary and listed membership', async () => {
    const s = scopeOf(await connectAs(lead, [gid(leads)]), policy(roles()), directory);
    expect(s.role).toBe('manager');
    expect(seen(s).sort()).toEqual([alice.name, bob.name, lead.name].sort());
    expect(s.hostWide).toBe(false);
    expect(s.userFilter(alice.name)(alice.uid)).toBe(true);
    expect(() => s.userFilter(String(carol.uid))).toThrow(/your role's/);
    const rows = s.rows(users.map((u) => ({ uid: u.uid, user: u.name, pid: 42 })));
    expect(rows).toEqual([alice, bob, lead].map((u) => ({ uid: u.uid, user: u.name, pid: 42 })));
  });

  it('the same user without the group in their process is just themselves', async () => {
    expect(scopeOf(await connectAs(lead, 'none'), policy(roles()), directory).role).toBe('self');
  });

  it('an auditor sees everyone under keyed pseudonyms and anonymised remote addresses', async () => {
    const caller = await connectAs(aud, 'init');
    const s = scopeOf(caller, policy(roles()), directory);
    expect(s.role).toBe('auditor');
    expect(seen(s)).toEqual(users.map((u) => u.name));
    expect(s.hostWide).toBe(true);
    const row = { uid: alice.uid, user: alice.name, pid: 1234, remoteAddress: '198.18.7.2', family: 4 };
    const shown = s.present(row);
    expect(shown.uid).toBeGreaterThanOrEqual(2 ** 32);
    expect(shown.user).toMatch(/^anon-[0-9a-f]{10}$/);
    expect(shown.pid).toBeGreaterThanOrEqual(2 ** 32);
    expect(shown.remoteAddress).not.toBe(row.remoteAddress);
    // stable: a second request (a new scope) gives the same pseudonyms
    expect(scopeOf(caller, policy(roles()), directory).present(row)).toEqual(shown);
    // prefix-preserving: the mapped form of the same IPv4 peer shares the anonymised address
    expect(s.present({ ...row, remoteAddress: '::ffff:198.18.7.2', family: 6 }).remoteAddress).toBe(`::ffff:${shown.remoteAddress}`);
    expect(s.present({ ...row, remoteAddress: '198.18.7.3' }).remoteAddress!.split('.').slice(0, 3)).toEqual(shown.remoteAddress!.split('.').slice(0, 3));
    expect(s.present({ ...row, remoteAddress: '2001:db8:1::2', family: 6 }).remoteAddress).toMatch(/^[0-9a-f:]+$/);
    // filters by pseudonym only
    expect(s.userFilter(shown.user)(alice.uid)).toBe(true);
    expect(s.userFilter(shown.user)(bob.uid)).toBe(false);
    expect(() => s.userFilter(alice.name)).toThrow(/as an auditor you name users by pseudonym/);
    const key = statSync(join(dir, 'auditor.key'));
    expect([key.mode & 0o777, key.uid, key.size]).toEqual([0o600, 0, 32]);
  });

  it('admin_group (listed membership) and root see everything; admin wins over other roles', async () => {
    execFileSync('usermod', ['-aG', admins, aud.name]);
    const s = scopeOf(await connectAs(aud, 'none'), policy(roles(), admins), directory);
    expect(s.role).toBe('admin');
    expect(s.present({ uid: alice.uid, user: alice.name })).toEqual({ uid: alice.uid, user: alice.name });
    const root = scopeOf({ pid: process.pid, uid: 0, gid: 0, groups: [] }, policy(roles()), directory);
    expect([root.role, root.hostWide, seen(root).length]).toEqual(['admin', true, users.length]);
  });

  it('a secret others may read is refused, with the fix', () => {
    const loose = join(dir, 'loose.key');
    execFileSync('sh', ['-c', `head -c 32 /dev/urandom > ${loose}; chmod 644 ${loose}`]);
    expect(() => readOrCreateSecret(loose)).toThrow(/must be owned by root and not readable by others.*chmod 600/);
  });
});
