// cgroup v2 ID → cgroup path ("/system.slice/nginx.service"): the ID the kernel meter
// records (bpf_get_current_cgroup_id) is the inode number of the cgroup's directory in the
// cgroup2 filesystem (kernfs node ID = inode on 64-bit kernels), so a walk of that
// filesystem names it. The path ends in the systemd unit (service, scope) when systemd
// manages the host.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

/** Where cgroup2 is mounted (e.g. /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid
 *  hosts), from /proc/self/mounts; null when there is none. */
export function cgroup2Mount(mounts = readFileSync('/proc/self/mounts', 'utf8')): string | null {
  for (const line of mounts.split('\n')) {
    const [, dir, type] = line.split(' ');
    if (type === 'cgroup2' && dir) return dir.replace(/\\040/g, ' ');
  }
  return null;
}

/** Enough for any host; beyond it the walk stops (and logs once) rather than stall the agent. */
const MAX_CGROUPS = 100_000;

export type CgroupPathOf = (id: bigint) => string;

/**
 * A cached resolver. An unknown ID triggers a new walk at most every `rescanMs`, so cgroups
 * created after the last walk (new services, sessions) are found; paths of cgroups that
 * are gone stay known. IDs it cannot name (0 = unknown owner, or removed before any walk
 * saw them) give "", and an ID a walk made after it was asked for did not find is
 * remembered as "" (its cgroup is gone: no later walk can find it).
 */
export function createCgroupPaths(opts: { root: string | null; logger: Logger; rescanMs?: number; now?: () => number }): CgroupPathOf {
  const { root, logger } = opts;
  const rescanMs = opts.rescanMs ?? 10_000;
  const now = opts.now ?? Date.now;
  const paths = new Map<bigint, string>();
  let lastWalkMs = -Infinity;
  let warned = false;

  function walk(): void {
    lastWalkMs = now();
    if (root === null) return;
    if (paths.size > MAX_CGROUPS) paths.clear();
    const stack = [''];
    let seen = 0;
    while (stack.length > 0) {
      const rel = stack.pop()!;
      const dir = join(root, rel);
      try {
        paths.set(statSync(dir, { bigint: true }).ino, rel === '' ? '/' : rel);
        for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) stack.push(`${rel}/${e.name}`);
      } catch {
        // the cgroup went away during the walk
      }
      if (++seen >= MAX_CGROUPS) {
        if (!warned) logger.warn({ root, limit: MAX_CGROUPS }, 'too many cgroups to name them all; some cgroup paths (IPFIX, units) will be empty');
        warned = true;
        break;
      }
    }
  }

  return (id) => {
    if (id === 0n) return '';
    let p = paths.get(id);
    if (p === undefined && now() - lastWalkMs >= rescanMs) {
      walk();
      p = paths.get(id) ?? '';
      paths.set(id, p);
    }
    return p ?? '';
  };
}

/** Is the cgroup of this id still there at this path? (A path made again later is another
 *  cgroup: another id.) */
export function cgroupExists(root: string | null, id: bigint, path: string): boolean {
  if (root === null) return false;
  try {
    return statSync(join(root, path), { bigint: true }).ino === id;
  } catch {
    return false;
  }
}
