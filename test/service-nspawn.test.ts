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
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootWithScript, packageDeb, SCRIPT_HEAD, SCRIPT_TAIL, type Facts } from './support/nspawn.js';
import { tempDir } from './support/testbed.js';

/** Runs inside the booted container as a oneshot unit; writes its findings to /result. */
const IN_CONTAINER = `${SCRIPT_HEAD}restarts() { systemctl show ubia -p NRestarts --value; }
# a wedged agent: stopped, so it sends no WATCHDOG=1 (systemd sends SIGCONT with its kill)
stall() { kill -STOP "$(systemctl show ubia -p MainPID --value)"; }

dpkg -i /root/ubia.deb; report install $?
wait_active ubia
report active "$(systemctl is-active ubia)"
ubia status > /result/status 2>&1; report status_exit $?

systemctl reload ubia; report reload_exit $?
sleep 2
journalctl -u ubia -o cat --no-pager -n 15 > /result/reload-journal
report active_after_reload "$(systemctl is-active ubia)"

mkdir -p /etc/systemd/system/ubia.service.d
printf '[Service]\\nWatchdogSec=4s\\n' > /etc/systemd/system/ubia.service.d/watchdog.conf
systemctl daemon-reload
systemctl restart ubia; wait_active ubia
before=$(restarts)
sleep 10
report healthy_restarts $(( $(restarts) - before ))
stall
for i in $(seq 1 60); do [ "$(restarts)" -gt "$before" ] && break; sleep 1; done
report stalled_restarts $(( $(restarts) - before ))
report watchdog_timeouts "$(journalctl -u ubia -o cat --no-pager | grep -c 'Watchdog timeout')"
wait_active ubia
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
${SCRIPT_TAIL}`;

describe('the package in a systemd-nspawn container with systemd as PID 1', () => {
  const work = tempDir('ubia-nspawn-');
  const result = join(work, 'result');
  let facts: Facts = {};
  let journal = '';

  beforeAll(() => {
    facts = bootWithScript(work, packageDeb(join(work, 'out')), IN_CONTAINER);
    journal = existsSync(join(result, 'journal')) ? readFileSync(join(result, 'journal'), 'utf8') : '';
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
    expect(status).not.toMatch(/\[ \]/); // no hook left inactive
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
