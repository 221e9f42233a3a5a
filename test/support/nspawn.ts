// A Debian 12 root file system with systemd, for tests that boot a container with
// systemd as PID 1 (systemd-nspawn): built once with debootstrap from the Debian mirror the
// host's apt uses (about 90 s and 250 MB on a fresh machine), kept in
// /var/cache/ubia-test/nspawn-bookworm; each run boots a throw-away copy of it.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './agent.js';

export const ROOTFS = '/var/cache/ubia-test/nspawn-bookworm';
const SUITE = 'bookworm';

/** The mirror the host's apt fetches bookworm from (the one this machine can reach):
 *  deb822 `.sources` files first, then one-line `sources.list` entries. */
function debianMirror(): string {
  const dir = '/etc/apt/sources.list.d';
  const deb822 = (existsSync(dir) ? readdirSync(dir) : []).filter((f) => f.endsWith('.sources')).map((f) => readFileSync(join(dir, f), 'utf8'));
  for (const stanza of deb822.join('\n\n').split(/\n\s*\n/)) {
    const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'mi').exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
    if (field('Types').includes('deb') && field('Suites').includes(SUITE)) return field('URIs')[0]!;
  }
  const list = existsSync('/etc/apt/sources.list') ? readFileSync('/etc/apt/sources.list', 'utf8') : '';
  return new RegExp(`^deb\\s+(?:\\[[^\\]]*\\]\\s+)?(\\S+)\\s+${SUITE}\\s`, 'm').exec(list)?.[1] ?? 'http://deb.debian.org/debian';
}

/** systemd as PID 1, and the runtime libraries the package depends on */
const DEBOOTSTRAP_ARGS = ['--variant=minbase', '--include=systemd,systemd-sysv,dbus,libbpf1,libelf1,zlib1g', SUITE];
/** Written into a finished root file system: a cache built with other arguments is rebuilt. */
const STAMP = join(ROOTFS, '.ubia-debootstrap');

export function ensureRootfs(): void {
  if (existsSync(STAMP) && readFileSync(STAMP, 'utf8') === DEBOOTSTRAP_ARGS.join(' ')) return;
  const building = `${ROOTFS}.tmp`;
  rmSync(building, { recursive: true, force: true });
  mkdirSync(building, { recursive: true });
  const mirror = debianMirror();
  const r = spawnSync('debootstrap', [...DEBOOTSTRAP_ARGS, building, mirror], {
    encoding: 'utf8',
    timeout: 540_000,
    killSignal: 'SIGKILL',
  });
  if (r.status !== 0) {
    const log = existsSync(join(building, 'debootstrap/debootstrap.log')) ? readFileSync(join(building, 'debootstrap/debootstrap.log'), 'utf8') : '';
    throw new Error(
      `debootstrap of Debian ${SUITE} from ${mirror} into ${building} failed (${r.error?.message ?? `exit ${r.status}`}); ` +
        `install it with scripts/setup install (APT_PACKAGES has debootstrap and systemd-container) and check that the mirror is reachable:\n` +
        `${r.stderr}\n${log.slice(-3000)}`,
    );
  }
  writeFileSync(join(building, '.ubia-debootstrap'), DEBOOTSTRAP_ARGS.join(' '));
  rmSync(ROOTFS, { recursive: true, force: true });
  renameSync(building, ROOTFS);
}

const TEST_UNIT = `[Unit]
Description=the test's script, run once the container has booted
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/ubia-test
[Install]
WantedBy=multi-user.target
`;

/** What a container's script reported: `report KEY VALUE` lines of /result/facts. */
export type Facts = Record<string, string[]>;

/** Shell functions a container script starts with: its output to /result/log,
 *  `report KEY VALUE` into /result/facts, and `wait_active UNIT` (60 s at most). */
export const SCRIPT_HEAD = `#!/bin/sh
exec > /result/log 2>&1
set -x
report() { printf '%s=%s\\n' "$1" "$2" >> /result/facts; }
wait_active() { for i in $(seq 1 60); do systemctl is-active --quiet "$1" && return 0; sleep 1; done; return 1; }
`;

/** How a container script ends: the fact that it got there, and the container goes down. */
export const SCRIPT_TAIL = `report done 1
systemctl poweroff
`;

/**
 * Boots a throw-away copy of the root file system with systemd as PID 1 and the package
 * `deb` at /root/ubia.deb; `script` (SCRIPT_HEAD … SCRIPT_TAIL) runs as a oneshot unit,
 * reports its facts and writes what else it wants under /result (`work`/result on the
 * host). Fails, with the container's
 * output and the script's log, when it did not get that far.
 */
export function bootWithScript(work: string, deb: string, script: string): Facts {
  ensureRootfs();
  const root = join(work, 'root');
  const result = join(work, 'result');
  cpSync(ROOTFS, root, { recursive: true, verbatimSymlinks: true });
  cpSync(deb, join(root, 'root/ubia.deb'));
  writeFileSync(join(root, 'usr/local/sbin/ubia-test'), script);
  chmodSync(join(root, 'usr/local/sbin/ubia-test'), 0o755);
  writeFileSync(join(root, 'etc/systemd/system/ubia-test.service'), TEST_UNIT);
  symlinkSync('/etc/systemd/system/ubia-test.service', join(root, 'etc/systemd/system/multi-user.target.wants/ubia-test.service'));
  mkdirSync(result);
  // Its own network namespace (only lo): in the host's, the container's agent, with the
  // built-in pin_dir, would take over the tc filters (same handle and priority) that an
  // agent `scripts/setup start` left running has on the host's interfaces, and leave its
  // own there. nspawn's /sys of a private network has no /sys/fs/bpf to mount bpffs on
  // (ubia-bpffs.service): a bpffs of the test's own is mounted there instead.
  const bpffs = join(work, 'bpffs');
  mkdirSync(bpffs);
  execFileSync('mount', ['-t', 'bpf', 'bpf', bpffs]);
  let boot;
  try {
    // boots, runs ubia-test.service, powers off; the timeout bounds a hung boot
    boot = spawnSync(
      'systemd-nspawn',
      ['--register=no', '--keep-unit', '--quiet', '-D', root, '--boot', '--private-network', `--bind=${bpffs}:/sys/fs/bpf`, `--bind=${result}:/result`,
        '--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN', '--system-call-filter=bpf perf_event_open'],
      { encoding: 'utf8', timeout: 240_000, killSignal: 'SIGKILL' },
    );
  } finally {
    execFileSync('umount', [bpffs]);
  }
  const facts: Facts = {};
  const factsFile = join(result, 'facts');
  for (const line of existsSync(factsFile) ? readFileSync(factsFile, 'utf8').split('\n') : []) {
    const eq = line.indexOf('=');
    if (eq > 0) (facts[line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  if (!facts.done) {
    const log = existsSync(join(result, 'log')) ? readFileSync(join(result, 'log'), 'utf8') : '';
    throw new Error(
      `the container run did not finish (systemd-nspawn: ${boot.error?.message ?? `exit ${boot.status}`}); systemd-nspawn comes with ` +
        `scripts/setup install (systemd-container) and needs root; its output and the in-container log follow:\n` +
        `${boot.stdout}\n${boot.stderr}\n${log.slice(-4000)}`,
    );
  }
  return facts;
}

/** Builds the .deb from the built tree into `outDir`; returns its path. */
export function packageDeb(outDir: string): string {
  return execFileSync(join(ROOT, 'scripts', 'package-deb'), [outDir], { encoding: 'utf8', timeout: 280_000 }).trim().split('\n').pop()!;
}
