// The package under a real systemd: a Debian 12 container booted with systemd-nspawn
// (systemd as PID 1), the .deb installed inside, and the unit's promises checked there —
// `systemctl is-active ubia`, `ubia status` from the installed files, reload, the watchdog
// (a healthy agent survives a short WatchdogSec, a stalled one is killed and restarted),
// a clean stop, and `dpkg --purge` removing the pins. The container gets exactly the
// capabilities the unit keeps (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN) plus nspawn's defaults.
//
// The Debian root file system is built once with debootstrap from the Debian mirror the
// host's apt uses (about 90 s and 250 MB on a fresh machine) and kept in
// /var/cache/ubia-test/nspawn-bookworm; each run boots a throw-away copy of it. Nothing is
// skipped: a missing tool, an unreachable mirror or a container that does not boot fails
// the test with what to do.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './support/agent.js';
import { tempDir } from './support/testbed.js';

const ROOTFS = '/var/cache/ubia-test/nspawn-bookworm';
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

function ensureRootfs(): void {
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

/** Runs inside the booted container as a oneshot unit; writes its findings to /result. */
const IN_CONTAINER = `#!/bin/sh
exec > /result/log 2>&1
set -x
report() { printf '%s=%s\\n' "$1" "$2" >> /result/facts; }
wait_active() { for i in $(seq 1 60); do systemctl is-active --quiet ubia && return 0; sleep 1; done; return 1; }
restarts() { systemctl show ubia -p NRestarts --value; }
# a wedged agent: stopped, so it sends no WATCHDOG=1 (systemd sends SIGCONT with its kill)
stall() { kill -STOP "$(systemctl show ubia -p MainPID --value)"; }

dpkg -i /root/ubia.deb; report install $?
wait_active
report active "$(systemctl is-active ubia)"
ubia status > /result/status 2>&1; report status_exit $?

systemctl reload ubia; report reload_exit $?
sleep 2
journalctl -u ubia -o cat --no-pager -n 15 > /result/reload-journal
report active_after_reload "$(systemctl is-active ubia)"

mkdir -p /etc/systemd/system/ubia.service.d
printf '[Service]\\nWatchdogSec=4s\\n' > /etc/systemd/system/ubia.service.d/watchdog.conf
systemctl daemon-reload
systemctl restart ubia; wait_active
before=$(restarts)
sleep 10
report healthy_restarts $(( $(restarts) - before ))
stall
for i in $(seq 1 60); do [ "$(restarts)" -gt "$before" ] && break; sleep 1; done
report stalled_restarts $(( $(restarts) - before ))
report watchdog_timeouts "$(journalctl -u ubia -o cat --no-pager | grep -c 'Watchdog timeout')"
wait_active
report active_after_watchdog "$(systemctl is-active ubia)"

systemctl stop ubia
report stop_result "$(systemctl show ubia -p Result --value)"
report stop_status "$(systemctl show ubia -p ExecMainStatus --value)"
rm -rf /etc/systemd/system/ubia.service.d
journalctl -u ubia -o cat --no-pager > /result/journal

dpkg --purge ubia; report purge $?
for p in /sys/fs/bpf/ubia /var/lib/ubia /etc/ubia /usr/lib/ubia /usr/bin/ubia /lib/systemd/system/ubia.service /etc/systemd/system/multi-user.target.wants/ubia.service; do
  [ -e "$p" ] && report left "$p"
done
report done 1
systemctl poweroff
`;

const TEST_UNIT = `[Unit]
Description=install ubia and check it under systemd
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/ubia-test
[Install]
WantedBy=multi-user.target
`;

describe('the package in a systemd-nspawn container with systemd as PID 1', () => {
  const work = tempDir('ubia-nspawn-');
  const root = join(work, 'root');
  const result = join(work, 'result');
  let facts: Record<string, string[]> = {};
  let journal = '';

  beforeAll(() => {
    ensureRootfs();
    const deb = execFileSync(join(ROOT, 'scripts', 'package-deb'), [join(work, 'out')], { encoding: 'utf8', timeout: 280_000 })
      .trim()
      .split('\n')
      .pop()!;
    cpSync(ROOTFS, root, { recursive: true, verbatimSymlinks: true });
    cpSync(deb, join(root, 'root/ubia.deb'));
    writeFileSync(join(root, 'usr/local/sbin/ubia-test'), IN_CONTAINER);
    chmodSync(join(root, 'usr/local/sbin/ubia-test'), 0o755);
    writeFileSync(join(root, 'etc/systemd/system/ubia-test.service'), TEST_UNIT);
    symlinkSync('/etc/systemd/system/ubia-test.service', join(root, 'etc/systemd/system/multi-user.target.wants/ubia-test.service'));
    mkdirSync(result);
    // boots, runs ubia-test.service, powers off; the timeout bounds a hung boot
    const boot = spawnSync(
      'systemd-nspawn',
      ['--register=no', '--keep-unit', '--quiet', '-D', root, '--boot', `--bind=${result}:/result`,
        '--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN', '--system-call-filter=bpf perf_event_open'],
      { encoding: 'utf8', timeout: 240_000, killSignal: 'SIGKILL' },
    );
    facts = {};
    const factsFile = join(result, 'facts');
    for (const line of existsSync(factsFile) ? readFileSync(factsFile, 'utf8').split('\n') : []) {
      const eq = line.indexOf('=');
      if (eq > 0) (facts[line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
    }
    journal = existsSync(join(result, 'journal')) ? readFileSync(join(result, 'journal'), 'utf8') : '';
    if (!facts.done) {
      const log = existsSync(join(result, 'log')) ? readFileSync(join(result, 'log'), 'utf8') : '';
      throw new Error(
        `the container run did not finish (systemd-nspawn: ${boot.error?.message ?? `exit ${boot.status}`}); systemd-nspawn comes with ` +
          `scripts/setup install (systemd-container) and needs root; its output and the in-container log follow:\n` +
          `${boot.stdout}\n${boot.stderr}\n${log.slice(-4000)}`,
      );
    }
  }, 900_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const fact = (k: string) => facts[k]?.[0];

  it('installs, and systemctl is-active ubia says active', () => {
    expect(fact('install')).toBe('0');
    expect(fact('active'), journal).toBe('active');
  });

  it('answers `ubia status` with every hook attached, under the unit\'s sandbox and capabilities', () => {
    expect(fact('status_exit')).toBe('0');
    const status = readFileSync(join(result, 'status'), 'utf8');
    expect(status).toMatch(/agent:\s+running/);
    expect(status).toContain('/sys/fs/bpf/ubia');
    // every hook in use but the precise mode's per-call tracepoints (the default mode
    // runs no program per send/recv call); none that this kernel lacks
    const unused = status.split('\n').flatMap((l) => /^\s+\[ \] ([^:]+):/.exec(l)?.[1] ?? []);
    expect(unused).toEqual(['tp_btf/sock_send_length', 'tp_btf/sock_recv_length']);
    expect(status).not.toMatch(/\[-\]/);
  });

  it('reloads on systemctl reload (SIGHUP) and keeps running', () => {
    expect(fact('reload_exit'), readFileSync(join(result, 'reload-journal'), 'utf8')).toBe('0');
    expect(fact('active_after_reload')).toBe('active');
  });

  it('keeps the watchdog fed while healthy, and is restarted by systemd when its poll loop stalls', () => {
    expect(fact('healthy_restarts')).toBe('0');
    expect(Number(fact('stalled_restarts'))).toBeGreaterThanOrEqual(1);
    expect(Number(fact('watchdog_timeouts'))).toBeGreaterThanOrEqual(1);
    expect(fact('active_after_watchdog')).toBe('active');
  });

  it('stops cleanly on systemctl stop', () => {
    expect(fact('stop_result')).toBe('success');
    expect(fact('stop_status')).toBe('0');
  });

  it('dpkg --purge removes the files, the state, the config and the pinned maps', () => {
    expect(fact('purge')).toBe('0');
    expect(facts.left ?? []).toEqual([]);
  });
});
