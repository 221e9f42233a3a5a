// cgroup IDs from the meter are named by walking the cgroup2 filesystem (ID = inode).
import { mkdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cgroup2Mount, createCgroupPaths } from '../src/kernel/cgroups.js';
import { ownCgroup, silentLogger } from './support/ipfix.js';

const root = cgroup2Mount();
const top = root === null ? '' : join(root, `ubia-ipfix-test-${process.pid}`);
const made: string[] = [];
function makeCgroup(dir: string): bigint {
  mkdirSync(dir);
  made.push(dir);
  return statSync(dir, { bigint: true }).ino;
}
afterEach(() => {
  for (const d of made.reverse()) rmdirSync(d); // a cgroup is removed with rmdir, children first
  made.length = 0;
});

describe('cgroup paths', () => {
  it('finds the cgroup2 mount, also on hybrid hosts', () => {
    expect(cgroup2Mount('cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n')).toBe('/sys/fs/cgroup/unified');
    expect(cgroup2Mount('cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n')).toBe('/sys/fs/cgroup');
    expect(cgroup2Mount('proc /proc proc rw 0 0\n')).toBeNull();
    expect(root).not.toBeNull();
  });

  it('names this process\'s cgroup and one created after the first walk', () => {
    let now = 0;
    const pathOf = createCgroupPaths({ root, logger: silentLogger, now: () => now });
    const own = ownCgroup();
    expect(pathOf(own.id)).toBe(own.path);
    expect(pathOf(1n)).toBe('/'); // the root cgroup
    expect(pathOf(0n)).toBe(''); // owner unknown

    makeCgroup(top);
    const id = makeCgroup(join(top, 'web.service'));
    now += 1000;
    expect(pathOf(id)).toBe(''); // walked less than 10 s ago: not yet
    now += 9000;
    expect(pathOf(id)).toBe(`/ubia-ipfix-test-${process.pid}/web.service`);
  });
});
