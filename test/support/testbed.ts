// The one testbed of the tests and benchmarks: throw-away users, a network namespace
// behind a veth pair that stands in for "the outside" (198.18.0.0/15 and 2001:db8::/32,
// never routed), free ports, and a per-test bundle of them. Everything created here has a
// matching remove.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { serveTraffic, type TrafficServer } from './traffic.js';

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

/** Runs a command to completion; its stdout (throws with its stderr when it fails). */
export const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export function createUser(prefix = 'ubia-t'): TestUser {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  sh('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', name]);
  const uid = Number(sh('id', ['-u', name]).trim());
  const gid = Number(sh('id', ['-g', name]).trim());
  return { name, uid, gid };
}

export function removeUser(u: TestUser): void {
  // --force: a user whose last test process is still exiting is removed all the same
  spawnSync('userdel', ['--force', u.name], { stdio: 'ignore' });
  // its user group too, which userdel keeps while another user lists it (role tests)
  spawnSync('groupdel', [u.name], { stdio: 'ignore' });
}

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755); // test users run scripts from here
  return dir;
}

/** A port free on every address right now (a netns has all of its ports free anyway). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface TestNet {
  ns: string;
  /** the host end of the veth pair */
  hostInterface: string;
  hostV4: string;
  peerV4: string;
  hostV6: string;
  peerV6: string;
  remove(): void;
}

// Picks the first 198.18.0.0/15 /24 no host interface has an address in, and claims it by
// adding the host end's address, all under one lock: concurrently running tests (and
// benchmarks) never share a subnet. The IPv6 /64 follows from the same number (plus one).
const CREATE_NET = `
set -eu
ns=$1 host=$2 peer=$3
used=" $(ip -o -4 addr show | sed -n 's/.* inet 198\\.\\(1[89]\\.[0-9]*\\)\\..*/\\1/p' | tr '\\n' ' ') "
for a in 18 19; do
  for b in $(seq 0 255); do
    case "$used" in *" $a.$b "*) continue ;; esac
    # 1..512, never 0: addresses are then written as tools print them (no "2001:db8:0::")
    n=$(( (a - 18) * 256 + b + 1 ))
    v6=$(printf '2001:db8:%x' "$n")
    ip netns add "$ns"
    ip link add "$host" type veth peer name "$peer"
    ip link set "$peer" netns "$ns"
    ip addr add "198.$a.$b.1/24" dev "$host"
    ip -6 addr add "$v6::1/64" dev "$host" nodad
    ip link set "$host" up
    ip -n "$ns" addr add "198.$a.$b.2/24" dev "$peer"
    ip -n "$ns" -6 addr add "$v6::2/64" dev "$peer" nodad
    ip -n "$ns" link set "$peer" up
    ip -n "$ns" link set lo up
    echo "198.$a.$b $v6"
    exit 0
  done
done
echo "every /24 of 198.18.0.0/15 is in use on this host: remove stale ubia-t-* namespaces (ip netns list)" >&2
exit 1
`;
const NET_LOCK = '/run/lock/ubia-testnet.lock';

/** A netns joined to the host by a veth pair, on a subnet no other testbed uses. */
export function createNet(): TestNet {
  const tag = randomBytes(2).toString('hex');
  const ns = `ubia-t-${tag}`;
  const host = `ubt${tag}h`;
  const peer = `ubt${tag}p`;
  const remove = () => {
    spawnSync('ip', ['link', 'del', host], { stdio: 'ignore' });
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  };
  let v4: string, v6: string;
  try {
    mkdirSync(dirname(NET_LOCK), { recursive: true }); // a fresh /run (the kernel-matrix VMs) has no lock/
    [v4, v6] = sh('flock', [NET_LOCK, 'sh', '-c', CREATE_NET, 'create-net', ns, host, peer]).trim().split(' ') as [string, string];
  } catch (e) {
    remove();
    throw e;
  }
  return { ns, hostInterface: host, hostV4: `${v4}.1`, peerV4: `${v4}.2`, hostV6: `${v6}::1`, peerV6: `${v6}::2`, remove };
}

/** Detaches and unpins a meter a test agent left in the kernel. (The kernel layer loads
 *  the native addon: imported only when a testbed is torn down.) */
export async function removeMeter(pinDir: string): Promise<void> {
  const { detachMeter } = await import('../../src/kernel/index.js');
  try {
    detachMeter(pinDir);
  } finally {
    rmSync(pinDir, { recursive: true, force: true });
  }
}

/** What the real-agent tests share: a temp dir, a pin dir of their own (never the
 *  system's), throw-away users and, with `sinkPort`, a netns behind a veth with a traffic
 *  sink in it. `remove()` undoes whatever was made, also after a partial set-up. */
export interface Testbed {
  dir: string;
  pinDir: string;
  users: TestUser[];
  /** present when a sink port was asked for */
  net: TestNet;
  sink: TrafficServer & { port: number };
  remove(): Promise<void>;
}

export async function createTestbed(name: string, opts: { users: number; sinkPort?: number }): Promise<Testbed> {
  const undo: (() => void | Promise<void>)[] = [];
  const bed = {
    dir: tempDir(`ubia-${name}-`),
    pinDir: `/sys/fs/bpf/ubia-test-${name}-${process.pid}`,
    users: [] as TestUser[],
    async remove() {
      for (const step of undo.splice(0).reverse()) await step();
    },
  } as Testbed;
  undo.push(() => rmSync(bed.dir, { recursive: true, force: true }), () => removeMeter(bed.pinDir));
  try {
    for (let i = 0; i < opts.users; i++) {
      const u = createUser();
      bed.users.push(u);
      undo.push(() => removeUser(u));
    }
    if (opts.sinkPort !== undefined) {
      bed.net = createNet();
      undo.push(() => bed.net.remove());
      // it lives as long as the testbed (removed with it), not serveTraffic's default minute
      const sink = serveTraffic(['sink', '::', String(opts.sinkPort)], { net: bed.net }, 30 * 60_000);
      undo.push(() => void sink.proc.kill('SIGKILL'));
      await sink.ready;
      bed.sink = { ...sink, port: opts.sinkPort };
    }
  } catch (e) {
    await bed.remove();
    throw e;
  }
  return bed;
}
