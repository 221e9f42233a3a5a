// The default mode's owner rule against a real OpenSSH server (Debian's sshd): root
// accepts, a privilege-separated child runs the key exchange, and after authentication a
// child running as the user serves the session. A test user's scp upload and download of
// known sizes must land on that user's uid. Needs root; never skipped.
import { chownSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMeter, type Meter, type TrafficCounters } from '../src/kernel/index.js';
import { createLoginUser, startSshd, type Sshd } from './support/sshd.js';
import { createNet, removeUser, sh, tempDir, type TestNet, type TestUser } from './support/testbed.js';
import { sleep } from './support/wait.js';

const PIN_DIR = `/sys/fs/bpf/ubia-test-sshd-${process.pid}`;
const MiB = 1 << 20;
// SSH adds its framing, padding and MACs to every byte scp moves, and a few kB of
// key exchange and authentication before the session starts
const overheadOf = (bytes: number) => bytes * 0.05 + 64 * 1024;

let meter: Meter;
let net: TestNet;
let dir: string;
let user: TestUser & { home: string };
let sshd: Sshd;

function payload(uid: number): TrafficCounters {
  const u = meter.readUsers().find((r) => r.uid === uid && r.scope === 'external');
  return u ?? { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxPayloadBytes: 0, txPayloadBytes: 0 };
}

/** scp run by root inside the namespace, as the test user on the host's sshd. */
function scp(from: string, to: string) {
  try {
    sh('ip', ['netns', 'exec', net.ns, 'scp', '-q', ...sshd.clientOptions, '-P', String(sshd.port), from, to]);
  } catch (err) {
    throw new Error(`${(err as Error).message}\nsshd said:\n${sshd.log()}`);
  }
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
  dir = tempDir('ubia-sshd-');
  user = createLoginUser(dir, `ubia-s-${process.pid % 100000}`);
  sshd = await startSshd({ dir, listen: [net.hostV4], users: [user.name] });
});

afterAll(() => {
  sshd?.stop();
  meter?.close({ detach: true });
  if (net) net.remove();
  if (user) removeUser(user); // sshd's session may still be ending: removeUser forces
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('attribution through a real OpenSSH server', () => {
  it("counts a user's scp upload on that user's uid", async () => {
    const bytes = 6 * MiB;
    const local = join(dir, 'upload.src');
    writeFileSync(local, Buffer.alloc(bytes, 7));
    const before = await settled(user.uid);
    scp(local, `${user.name}@${net.hostV4}:${join(user.home, 'upload')}`);
    expect(statSync(join(user.home, 'upload')).size).toBe(bytes);
    const d = await settled(user.uid);
    const rx = d.rxPayloadBytes - before.rxPayloadBytes;
    expect(rx).toBeGreaterThanOrEqual(bytes);
    expect(rx).toBeLessThan(bytes + overheadOf(bytes));
  }, 60_000);

  it("counts a user's scp download on that user's uid", async () => {
    const bytes = 5 * MiB;
    writeFileSync(join(user.home, 'download'), Buffer.alloc(bytes, 9));
    chownSync(join(user.home, 'download'), user.uid, user.gid);
    const before = await settled(user.uid);
    const local = join(dir, 'download.dst');
    scp(`${user.name}@${net.hostV4}:${join(user.home, 'download')}`, local);
    expect(statSync(local).size).toBe(bytes);
    const d = await settled(user.uid);
    const tx = d.txPayloadBytes - before.txPayloadBytes;
    expect(tx).toBeGreaterThanOrEqual(bytes);
    expect(tx).toBeLessThan(bytes + overheadOf(bytes));
  }, 60_000);
});
