// The default mode's owner rule against a real OpenSSH server (Debian's sshd): root
// accepts, a privilege-separated child runs the key exchange, and after authentication a
// child running as the user serves the session. A test user's scp upload and download of
// known sizes must land on that user's uid. Needs root; never skipped.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMeter, type Meter, type TrafficCounters } from '../src/kernel/index.js';
import { createNet, freePort, sh, type TestNet } from './support/testbed.js';
import { sleep } from './support/wait.js';

const PIN_DIR = `/sys/fs/bpf/ubia-test-sshd-${process.pid}`;
const MiB = 1 << 20;
// SSH adds its framing, padding and MACs to every byte scp moves, and a few kB of
// key exchange and authentication before the session starts
const overheadOf = (bytes: number) => bytes * 0.05 + 64 * 1024;

let meter: Meter;
let net: TestNet;
let dir: string;
let user: { name: string; uid: number; gid: number };
let sshd: ChildProcess;
let sshdLog = '';
let port: number;

function payload(uid: number): TrafficCounters {
  const u = meter.readUsers().find((r) => r.uid === uid && r.scope === 'external');
  return u ?? { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxPayloadBytes: 0, txPayloadBytes: 0 };
}

/** scp run by root inside the namespace, as the test user on the host's sshd. */
function scp(from: string, to: string) {
  try {
    scpOnce(from, to);
  } catch (err) {
    throw new Error(`${(err as Error).message}\nsshd said:\n${sshdLog}`);
  }
}

function scpOnce(from: string, to: string) {
  sh('ip', ['netns', 'exec', net.ns, 'scp', '-q', '-i', join(dir, 'client_key'), '-P', String(port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', from, to]);
}

async function settled(uid: number): Promise<TrafficCounters> {
  let last = JSON.stringify(payload(uid));
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    const now = JSON.stringify(payload(uid));
    if (now === last) break;
    last = now;
  }
  return JSON.parse(last) as TrafficCounters;
}

beforeAll(async () => {
  meter = openMeter({ pinDir: PIN_DIR });
  net = createNet();
  dir = mkdtempSync('/tmp/ubia-sshd-');
  chmodSync(dir, 0o755);
  const name = `ubia-s-${process.pid % 100000}`;
  // a login shell: scp's session runs through it
  sh('useradd', ['--no-create-home', '--home-dir', join(dir, 'home'), '--shell', '/bin/sh', '--user-group', name]);
  sh('usermod', ['--password', '*', name]); // no password, but not locked: sshd refuses locked accounts
  user = { name, uid: Number(sh('id', ['-u', name]).trim()), gid: Number(sh('id', ['-g', name]).trim()) };
  mkdirSync(join(dir, 'home'));
  chownSync(join(dir, 'home'), user.uid, user.gid);
  sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_key')]);
  mkdirSync(join(dir, 'keys'));
  writeFileSync(join(dir, 'keys', name), readFileSync(join(dir, 'client_key.pub')));
  mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege separation directory
  port = await freePort();
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      `ListenAddress ${net.hostV4}`,
      `HostKey ${join(dir, 'host_key')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'keys')}/%u`,
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin no',
      `AllowUsers ${name}`,
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  );
  sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  sshd.stderr!.on('data', (d) => (sshdLog += d));
  for (let i = 0; i < 100 && !sshdLog.includes('Server listening'); i++) await sleep(50);
  expect(sshdLog, 'sshd did not start').toContain('Server listening');
});

afterAll(() => {
  sshd?.kill('SIGTERM');
  meter?.close({ detach: true });
  if (net) net.remove();
  if (user) sh('userdel', ['--force', user.name]); // sshd's session may still be ending
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('attribution through a real OpenSSH server', () => {
  it("counts a user's scp upload on that user's uid", async () => {
    const bytes = 6 * MiB;
    const local = join(dir, 'upload.src');
    writeFileSync(local, Buffer.alloc(bytes, 7));
    const before = await settled(user.uid);
    scp(local, `${user.name}@${net.hostV4}:${join(dir, 'home', 'upload')}`);
    expect(statSync(join(dir, 'home', 'upload')).size).toBe(bytes);
    const d = await settled(user.uid);
    const rx = d.rxPayloadBytes - before.rxPayloadBytes;
    expect(rx).toBeGreaterThanOrEqual(bytes);
    expect(rx).toBeLessThan(bytes + overheadOf(bytes));
  }, 60_000);

  it("counts a user's scp download on that user's uid", async () => {
    const bytes = 5 * MiB;
    writeFileSync(join(dir, 'home', 'download'), Buffer.alloc(bytes, 9));
    chownSync(join(dir, 'home', 'download'), user.uid, user.gid);
    const before = await settled(user.uid);
    const local = join(dir, 'download.dst');
    scp(`${user.name}@${net.hostV4}:${join(dir, 'home', 'download')}`, local);
    expect(statSync(local).size).toBe(bytes);
    const d = await settled(user.uid);
    const tx = d.txPayloadBytes - before.txPayloadBytes;
    expect(tx).toBeGreaterThanOrEqual(bytes);
    expect(tx).toBeLessThan(bytes + overheadOf(bytes));
  }, 60_000);
});
