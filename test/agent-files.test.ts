// The agent's files as a local user meets them (issue 12, item 1): whatever starts it, the
// ledger and the log are root's alone, and paths a user could change (a directory they
// can write, their symbolic link, a config file they own) are refused before root
// creates, appends to or reads anything there. Run as root with real test users.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from './support/agent.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sleep, waitFor } from './support/wait.js';

let bed: Testbed;
let mallory: TestUser;

beforeAll(async () => {
  bed = await createTestbed('files', { users: 1 });
  mallory = bed.users[0]!;
}, 60_000);

afterAll(async () => {
  await bed?.remove();
});

const agent = (config: string, ...args: string[]) => spawnSync(process.execPath, [CLI, 'agent', '--config', config, ...args], { encoding: 'utf8', timeout: 30_000 });
const asMallory = (...cmd: string[]) => spawnSync('setpriv', [`--reuid=${mallory.uid}`, `--regid=${mallory.gid}`, '--clear-groups', ...cmd], { encoding: 'utf8' });
const mode = (p: string) => statSync(p).mode & 0o7777;

function config(name: string, paths: { ledger: string; socket: string; log?: string }): string {
  const file = join(bed.dir, `${name}.toml`);
  writeFileSync(
    file,
    `[agent]\npin_dir = "${bed.pinDir}"\n[ledger]\npath = "${paths.ledger}"\nflush_interval = 1\n[control]\nsocket = "${paths.socket}"\n[log]\ndaemon_file = "${paths.log ?? join(bed.dir, 'unused.log')}"\n`,
  );
  return file;
}

/** A directory like /tmp: every user may add entries (sticky). */
function stickyDir(name: string): string {
  const dir = join(bed.dir, name);
  mkdirSync(dir);
  chmodSync(dir, 0o1777);
  return dir;
}

describe('the agent started with --daemon (as scripts/setup start does)', () => {
  it('makes its directories 0700 and the ledger and log 0600: a test user cannot read them', async () => {
    const home = join(bed.dir, 'daemon');
    const ledger = join(home, 'state', 'ledger.db');
    const log = join(home, 'log', 'agent.log');
    const file = config('daemon', { ledger, socket: join(home, 'run', 'control.sock'), log });
    const r = agent(file, '--daemon');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const pid = Number(/pid (\d+)/.exec(r.stdout)![1]);
    try {
      await waitFor('the ledger WAL', () => (existsSync(`${ledger}-wal`) ? true : undefined));
      await sleep(1500); // a flush has written to it
      expect(mode(join(home, 'state'))).toBe(0o700);
      expect(mode(join(home, 'log'))).toBe(0o700);
      for (const f of readdirSync(join(home, 'state'))) expect([f, mode(join(home, 'state', f))]).toEqual([f, 0o600]);
      expect(mode(log)).toBe(0o600);
      // the socket stays reachable for everyone, as documented
      expect(mode(join(home, 'run'))).toBe(0o755);
      expect(mode(join(home, 'run', 'control.sock')) & 0o777).toBe(0o666);
      // ... and the admin socket beside it root's alone (no admin_group)
      expect(mode(join(home, 'run', 'control.sock.admin')) & 0o777).toBe(0o600);
      const read = asMallory('cat', ledger);
      expect(read.status).not.toBe(0);
      expect(read.stderr).toMatch(/Permission denied/);
      expect(asMallory('cat', log).stderr).toMatch(/Permission denied/);
    } finally {
      process.kill(pid, 'SIGTERM');
      await waitFor('the daemon to exit', () => {
        try {
          process.kill(pid, 0);
          return undefined;
        } catch {
          return true;
        }
      });
    }
  }, 60_000);
});

describe('paths another user could change are refused, nothing is created there', () => {
  it("a test user's symbolic link as the state directory", () => {
    const sticky = stickyDir('sticky-state');
    const victim = join(bed.dir, 'victim-state');
    mkdirSync(victim, { mode: 0o700 });
    expect(asMallory('ln', '-s', victim, join(sticky, 'state')).status).toBe(0);
    const r = agent(config('symlink-state', { ledger: join(sticky, 'state', 'ledger.db'), socket: join(bed.dir, 'c1.sock') }));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^ubia agent: refusing ledger.path ${sticky}/state: ${sticky}/state is a symbolic link owned by uid ${mallory.uid}; make it owned by root`));
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(readdirSync(victim)).toEqual([]);
  });

  it("a test user's symbolic link as the daemon's log file (root would append to its target)", () => {
    const sticky = stickyDir('sticky-log');
    const victim = join(bed.dir, 'victim.log');
    expect(asMallory('ln', '-s', victim, join(sticky, 'agent.log')).status).toBe(0);
    const r = agent(config('symlink-log', { ledger: join(bed.dir, 'l2', 'ledger.db'), socket: join(bed.dir, 'c2.sock'), log: join(sticky, 'agent.log') }), '--daemon');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^ubia agent: refusing log\.daemon_file .*: .* is writable by every user; make it owned by root/);
    expect(existsSync(victim)).toBe(false);
  });

  it('a state or socket directory a test user owns', () => {
    const owned = join(bed.dir, 'mallorys');
    mkdirSync(owned, { mode: 0o755 });
    chownSync(owned, mallory.uid, mallory.gid);
    const state = agent(config('owned-state', { ledger: join(owned, 'ledger.db'), socket: join(bed.dir, 'c3.sock') }));
    expect(state.status).toBe(1);
    expect(state.stderr).toMatch(new RegExp(`refusing ledger.path ${owned}: ${owned} is owned by uid ${mallory.uid}`));
    const socket = agent(config('owned-socket', { ledger: join(bed.dir, 'l4', 'ledger.db'), socket: join(owned, 'control.sock') }));
    expect(socket.status).toBe(1);
    expect(socket.stderr).toMatch(/refusing control\.socket/);
    expect(readdirSync(owned)).toEqual([]);
  });

  it('a config file a test user owns, or that every user may write', () => {
    const file = config('writable', { ledger: join(bed.dir, 'l5', 'ledger.db'), socket: join(bed.dir, 'c5.sock') });
    chownSync(file, mallory.uid, mallory.gid);
    const owned = agent(file);
    expect(owned.status).toBe(1);
    expect(owned.stderr).toMatch(new RegExp(`^ubia agent: refusing the config file ${file}: ${file} is owned by uid ${mallory.uid}`));
    chownSync(file, 0, 0);
    chmodSync(file, 0o666);
    expect(agent(file).stderr).toMatch(/refusing the config file .* is writable by every user/);
    expect(existsSync(join(bed.dir, 'l5'))).toBe(false);
  });
});
