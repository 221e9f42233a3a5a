// The two sandbox choices of packaging/ubia.service that are measured rather than assumed:
// - CapabilityBoundingSet= is the smallest set that works: `ubia agent` started as root
//   with exactly that set (and no_new_privs, as the unit has) attaches every hook and
//   answers `ubia status`; with any one of them removed it cannot load its programs and
//   exits non-zero.
// - MemoryDenyWriteExecute= stays off because Node's JIT cannot run under it: the same
//   prctl systemd uses (PR_SET_MDWE) makes node abort; only --jitless runs. If a Node
//   release lifts this, the test fails: then turn the setting on.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { StatusResult } from '../src/control/protocol.js';
import { CLI, ROOT, writeAgentConfig } from './support/agent.js';
import { removeMeter, tempDir } from './support/testbed.js';
import { waitFor } from './support/wait.js';

const UNIT = readFileSync(join(ROOT, 'packaging', 'ubia.service'), 'utf8');
/** CapabilityBoundingSet= of the unit, e.g. ['CAP_BPF', 'CAP_PERFMON', 'CAP_NET_ADMIN'] */
const UNIT_CAPS = /^CapabilityBoundingSet=(.*)$/m.exec(UNIT)![1]!.trim().split(/\s+/);

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Outcome = { exited: number | null; logs: string } | { status: StatusResult };

/** Runs `ubia agent` as root with only `caps` (bounding set, hence permitted and
 *  effective set of a root process) until it answers `status` or exits. */
async function agentWithCaps(tag: string, caps: string[]): Promise<Outcome> {
  const dir = tempDir('ubia-caps-');
  const pinDir = `/sys/fs/bpf/ubia-capstest-${process.pid}-${tag}`;
  cleanups.push(async () => {
    rmSync(dir, { recursive: true, force: true });
    await removeMeter(pinDir); // its tc filters too, which outlive the pins
  });
  const bounding = ['-all', ...caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',');
  const agent = spawn(
    'setpriv',
    [`--bounding-set=${bounding}`, '--inh-caps=-all', '--no-new-privs', process.execPath, CLI, 'agent', '--config', writeAgentConfig({ dir, pinDir })],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let logs = '';
  agent.stdout.on('data', (d: Buffer) => (logs += d.toString()));
  agent.stderr.on('data', (d: Buffer) => (logs += d.toString()));
  const exited = new Promise<number | null>((resolve) => agent.on('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (agent.exitCode === null) agent.kill('SIGKILL');
    await exited;
  });
  const socket = join(dir, 'control.sock');
  return waitFor(`the agent with ${caps.join(' ') || 'no capabilities'} to answer or exit`, () => {
    if (agent.exitCode !== null) return { exited: agent.exitCode, logs };
    const r = spawnSync(process.execPath, [CLI, '--socket', socket, 'status', '--json'], { encoding: 'utf8', timeout: 10_000 });
    return r.status === 0 ? { status: JSON.parse(r.stdout) as StatusResult } : undefined;
  }, 60_000);
}

describe('the unit\'s sandbox, measured', () => {

  it('keeps exactly CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN', () => {
    expect([...UNIT_CAPS].sort()).toEqual(['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON']);
    expect(UNIT).toMatch(/^NoNewPrivileges=yes$/m);
  });

  it('runs with every hook attached on the unit\'s capabilities alone', async () => {
    const outcome = await agentWithCaps('all', UNIT_CAPS);
    expect('status' in outcome, 'exited' in outcome ? outcome.logs : '').toBe(true);
    const { meter } = (outcome as { status: StatusResult }).status;
    expect(meter.hooks.length).toBeGreaterThan(0);
    // every hook the kernel has is attached, but the per-call tracepoints: the default
    // mode does not use them (meter_mode = "precise" does)
    expect(meter.hooks.filter((h) => h.available && !h.active).map((h) => h.name)).toEqual(['tp_btf/sock_send_length', 'tp_btf/sock_recv_length']);
  });

  for (const missing of UNIT_CAPS) {
    it(`cannot load its programs without ${missing}`, async () => {
      const outcome = await agentWithCaps(missing.toLowerCase(), UNIT_CAPS.filter((c) => c !== missing));
      expect('exited' in outcome, `the agent ran without ${missing}`).toBe(true);
      const { exited, logs } = outcome as { exited: number | null; logs: string };
      expect(exited).not.toBe(0);
      // EPERM (no CAP_BPF, no CAP_NET_ADMIN) or the verifier's EINVAL (no CAP_PERFMON:
      // sk_storage and BTF pointers are perfmon-only)
      expect(logs).toMatch(/loading the BPF programs failed: (Operation not permitted|Invalid argument)/);
      // and says what to grant
      expect(logs).toMatch(missing === 'CAP_PERFMON' ? /without CAP_PERFMON: grant it/ : /grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN/);
    });
  }

  it('leaves MemoryDenyWriteExecute off: node aborts under PR_SET_MDWE unless --jitless', () => {
    expect(UNIT).not.toMatch(/^MemoryDenyWriteExecute=yes/m);
    // PR_SET_MDWE = 65, PR_MDWE_REFUSE_EXEC_GAIN = 1 (linux/prctl.h): what systemd sets for
    // MemoryDenyWriteExecute=yes on kernels >= 6.3
    const underMdwe = (...nodeArgs: string[]) =>
      spawnSync('python3', ['-c', `
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    sys.exit("PR_SET_MDWE failed: errno %d" % ctypes.get_errno())
os.execv(sys.argv[1], sys.argv[1:])
`, process.execPath, ...nodeArgs, '-e', 'console.log([1, 2, 3].map((x) => x * 2).join(","))'], { encoding: 'utf8', timeout: 30_000 });
    const jit = underMdwe();
    expect(jit.stderr).not.toContain('PR_SET_MDWE failed');
    expect(jit.status, 'node ran under PR_SET_MDWE: MemoryDenyWriteExecute=yes may now be possible').not.toBe(0);
    expect(jit.stderr).toContain('Check failed');
    const jitless = underMdwe('--jitless');
    expect(jitless.status, jitless.stderr).toBe(0);
    expect(jitless.stdout.trim()).toBe('2,4,6');
  });
});
