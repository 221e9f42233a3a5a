// Issue 14's example rule exempts "local-services" so that "the user's own SSH login must
// keep working": a blocked user logs in over SSH to a real OpenSSH server (Debian's sshd)
// on this host's loopback — the local service — runs a command and gets its output, while
// the same user's other new connections (to the network namespace standing in for the
// outside) fail with EPERM, inside the session too. Without the exemption the login
// fails at once with EPERM, not by a timeout. A login from outside (the namespace) to
// the host's sshd is not the user's traffic at all: the session's sockets are accepted by
// root's listener and are root's (sk_uid), so it works under a block, exempt or not.
// Needs root; never skipped.
import { spawnSync } from 'node:child_process';
import { chownSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detachMeter, openMeter, type Meter } from '../src/kernel/index.js';
import { openQuotaEnforcer, type QuotaEnforcer } from '../src/kernel/quota.js';
import { createLoginUser, startSshd, type Sshd } from './support/sshd.js';
import { createNet, freePort, removeUser, tempDir, type TestNet, type TestUser } from './support/testbed.js';
import { traffic } from './support/traffic.js';

const PIN_DIR = `/sys/fs/bpf/ubia-test-quota-ssh-${process.pid}`;
const HOUR = 3_600_000;
// ssh's own ConnectTimeout is 20 s (support/sshd.ts): a refusal by the quota programs
// must come long before it
const PROMPT_MS = 5000;

let meter: Meter; // the quota's packet checks run in its programs, as in the agent
let quota: QuotaEnforcer;
let net: TestNet;
let dir: string;
let user: TestUser & { home: string };
let sshd: Sshd;

/** `ssh user@127.0.0.1 command` run as the user on this host, or, `fromNs`, `ssh
 *  user@<host's veth address> command` run by root in the namespace. */
function ssh(command: string, fromNs = false) {
  const client = ['ssh', ...sshd.clientOptions, '-p', String(sshd.port), `${user.name}@${fromNs ? net.hostV4 : '127.0.0.1'}`, command];
  const argv = fromNs ? ['ip', 'netns', 'exec', net.ns, ...client] : ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', ...client];
  const started = Date.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 60_000, env: { ...process.env, HOME: fromNs ? '/root' : user.home } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started };
}

const tcpConnect = (host: string, port: number) => traffic<{ error: string | null }>(['try-send', 'tcp', host, String(port)], { user }).error;

beforeAll(async () => {
  net = createNet();
  dir = tempDir('ubia-quota-ssh-');
  user = createLoginUser(dir, `ubia-q-${process.pid % 100000}`);
  sshd = await startSshd({ dir, listen: ['127.0.0.1', net.hostV4], users: [user.name] });
  chownSync(sshd.clientKey, user.uid, user.gid); // ssh runs as the user and reads it
  meter = openMeter({ pinDir: PIN_DIR, foldOnRead: false });
  quota = openQuotaEnforcer({ pinDir: PIN_DIR });
  quota.set({ uid: user.uid, action: { kind: 'block' }, untilMs: Date.now() + HOUR });
});

afterAll(() => {
  quota?.close({ detach: true });
  meter?.close();
  detachMeter(PIN_DIR);
  sshd?.stop();
  net?.remove();
  if (user) removeUser(user); // sshd's session may still be ending: removeUser forces
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('quota block and the user\'s own SSH login (exempt = ["local-services"])', () => {
  it('logs in over loopback and runs a command; new connections elsewhere get EPERM, in the session too', async () => {
    quota.setExemptions({ cidrs: [], localServices: true });
    const port = await freePort();
    // bash's /dev/tcp: a connect() from the session's shell, as the user
    const r = ssh(`echo "logged in as $(id -un)"; bash -c 'exec 3<>/dev/tcp/${net.peerV4}/${port}' 2>&1; echo "connect exited $?"`);
    expect(r.status, `ssh: ${r.stderr}\nsshd said:\n${sshd.log()}`).toBe(0);
    expect(r.stdout).toContain(`logged in as ${user.name}`);
    expect(r.stdout).toMatch(/Operation not permitted/);
    expect(r.stdout).toContain('connect exited 1');
    // the same user outside the session: refused by the verdict, not by the peer
    expect(tcpConnect(net.peerV4, port)).toBe('EPERM');
    // and the peer is there: a refusal of its own once the verdict is lifted
    quota.clear(user.uid);
    try {
      expect(tcpConnect(net.peerV4, port)).toBe('ECONNREFUSED');
    } finally {
      quota.set({ uid: user.uid, action: { kind: 'block' }, untilMs: Date.now() + HOUR });
    }
  }, 90_000);

  it('without the exemption the login fails at once with EPERM; one from outside still works', () => {
    quota.setExemptions({ cidrs: [], localServices: false });
    try {
      const outside = ssh('echo "logged in as $(id -un)"', true);
      expect(outside.status, `ssh: ${outside.stderr}\nsshd said:\n${sshd.log()}`).toBe(0);
      expect(outside.stdout).toContain(`logged in as ${user.name}`);
      const r = ssh('echo "logged in"');
      expect(r.status, r.stdout).toBe(255); // ssh's own failure, not the command's
      expect(r.stdout).not.toContain('logged in');
      expect(r.stderr).toMatch(new RegExp(`connect to host 127\\.0\\.0\\.1 port ${sshd.port}: Operation not permitted`));
      expect(r.ms).toBeLessThan(PROMPT_MS);
    } finally {
      quota.setExemptions({ cidrs: [], localServices: true });
    }
  }, 90_000);
});
