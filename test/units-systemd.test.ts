// Usage per systemd unit under a real service manager: a Debian 12 container booted with
// systemd as PID 1 (systemd-nspawn, support/nspawn.ts), the .deb installed and its agent
// running as the ubia service; two `systemd-run` units of one test user send known
// payloads at once to a sink in the container (its own network namespace, so this is
// loopback traffic: count_loopback is on). `ubia units` shows both units, exactly, and
// they sum to the user's `ubia users` row; the user sees them too, as their own.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UnitsResult, UsersResult } from '../src/control/protocol.js';
import { bootWithScript, packageDeb, SCRIPT_HEAD, SCRIPT_TAIL, type Facts } from './support/nspawn.js';
import { tempDir } from './support/testbed.js';

const COUNTERS = ['rxBytes', 'txBytes', 'rxPackets', 'txPackets', 'rxPayloadBytes', 'txPayloadBytes'] as const;
const SIZES = { a: 1_100_000, b: 2_300_000 };
/** what the units send before their data (8 zero bytes: the size of a reply test/support's
 *  sink would send; this sink reads and discards, and replies nothing) */
const HEADER = 8;
/** the sink's port, in the container's own network namespace */
const PORT = 9000;

/** One unit's traffic: bash's /dev/tcp to the sink, the header, then `size` zero bytes;
 *  the unit then lives 2 s more: a cgroup is named when the agent first reads its id, and
 *  one removed before any read saw it stays unnamed (docs/units.md) */
const send = (unit: string, size: number) =>
  `systemd-run --uid=ubia-units --unit=${unit} --wait --quiet bash -c "exec 3<>/dev/tcp/127.0.0.1/${PORT}; printf '\\\\0\\\\0\\\\0\\\\0\\\\0\\\\0\\\\0\\\\0' >&3; head -c ${size} /dev/zero >&3; sleep 2"`;

// the sink: root, one `cat` per connection (the minimal root file system has no python)
const script = `${SCRIPT_HEAD}
systemd-socket-activate --inetd --accept --listen=127.0.0.1:${PORT} sh -c 'cat > /dev/null' &
dpkg -i /root/ubia.deb; report install $?
printf '[agent]\\npoll_interval = 0.2\\nflow_interval = 0.2\\ncount_loopback = true\\n[ledger]\\nflush_interval = 1\\n' > /etc/ubia/ubia.toml
systemctl restart ubia; wait_active ubia; report active "$(systemctl is-active ubia)"
useradd -M ubia-units; report uid "$(id -u ubia-units)"
${send('ubia-units-a', SIZES.a)} & a=$!; ${send('ubia-units-b', SIZES.b)} & b=$!; wait $a $b
report sent 1
sleep 3
ubia units -u ubia-units > /result/units.txt
ubia units --json -u ubia-units > /result/units.json; report units $?
ubia users --json > /result/users.json; report users $?
runuser -u ubia-units -- ubia units --json > /result/units-self.json; report units_self $?
journalctl -u ubia -o cat --no-pager > /result/journal
${SCRIPT_TAIL}`;

describe('usage per systemd unit in a container with systemd as PID 1', () => {
  const work = tempDir('ubia-units-systemd-');
  const result = join(work, 'result');
  let facts: Facts = {};
  const read = <T>(file: string): T => JSON.parse(readFileSync(join(result, file), 'utf8')) as T;

  beforeAll(() => {
    facts = bootWithScript(work, packageDeb(join(work, 'out')), script);
  }, 900_000);

  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it('shows both units exactly, summing to the user\'s total', () => {
    expect(facts.units?.[0], readFileSync(join(result, 'log'), 'utf8')).toBe('0');
    const uid = Number(facts.uid?.[0]);
    const units = read<UnitsResult>('units.json').units;
    const byName = Object.fromEntries(units.map((u) => [u.unit, u]));
    expect(Object.keys(byName).sort(), readFileSync(join(result, 'units.txt'), 'utf8')).toEqual(['ubia-units-a.service', 'ubia-units-b.service']);
    expect(byName['ubia-units-a.service']).toMatchObject({ uid, kind: 'service', txPayloadBytes: SIZES.a + HEADER, rxPayloadBytes: 0, cgroupPaths: ['/system.slice/ubia-units-a.service'] });
    expect(byName['ubia-units-b.service']).toMatchObject({ uid, kind: 'service', txPayloadBytes: SIZES.b + HEADER, rxPayloadBytes: 0 });
    const user = read<UsersResult>('users.json').users.find((u) => u.uid === uid)!;
    for (const k of COUNTERS) expect(units.reduce((a, u) => a + u[k], 0), k).toBe(user[k]);
  });

  it('the user sees their own units', () => {
    expect(facts.units_self?.[0]).toBe('0');
    expect(read<UnitsResult>('units-self.json').units.map((u) => u.unit).sort()).toEqual(['ubia-units-a.service', 'ubia-units-b.service']);
  });
});
