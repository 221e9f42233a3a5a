// What the agent makes of the kernel it runs on, held against the kernel itself. Runs on
// every kernel the project is tested on: the host's in the full suite, and each kernel of
// the matrix inside its VM (test/kernel-matrix.test.ts). The real agent starts in each
// mode; `ubia status` must say of every hook whether this kernel has it as the kernel's own
// BTF does, say what lacking it costs, and every hook it calls active must be attached in
// the kernel as bpftool sees it. Prints each kernel's hook list: the matrix's report.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusResult } from '../../src/control/protocol.js';
import { cli, startAgent, type AgentProcess } from '../support/agent.js';
import { createNet, removeMeter, tempDir, type TestNet } from '../support/testbed.js';

interface BpfLink {
  id: number;
  type: string;
  attach_type?: string;
  tp_name?: string;
}

const bpftool = (...args: string[]): unknown => JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8' }));

/** Whether the running kernel has a tracepoint a tp_btf program can attach to: its
 *  btf_trace_NAME typedef's name in the kernel's BTF (read here, not through libbpf). */
const vmlinux = readFileSync('/sys/kernel/btf/vmlinux');
const kernelHasTracepoint = (name: string) => vmlinux.includes(Buffer.from(`\0btf_trace_${name}\0`));

/** The agent's own words when it could not start: its stderr, not its JSON log. */
const humanLines = (text: string) =>
  text
    .split('\n')
    .map((l) => l.replace(/\{"level":.*$/, ''))
    .filter((l) => l !== '')
    .join('\n');

let net: TestNet | undefined;
beforeAll(() => {
  net = createNet(); // an interface for the tc hook to attach to, on every kernel
});
afterAll(() => net?.remove());

describe.each(['default', 'precise'] as const)(`the agent on this kernel (${release()}), %s mode asked for`, (mode) => {
  const pinDir = `/sys/fs/bpf/ubia-test-features-${mode}-${process.pid}`;
  let agent: AgentProcess | undefined;
  let startError: string | undefined;
  let status: StatusResult | undefined;
  let links: BpfLink[] | undefined;

  /** The agent's status; without it the first test says why, the others only that it is missing. */
  function started(first = false): StatusResult {
    if (!status) throw new Error(first ? `the agent did not start on ${release()}:\n${startError}` : 'no status: the agent did not start (the first test says why)');
    return status;
  }

  /** The links the agent pinned: its attachments, and no one else's (bpftool is slow in a VM: read once). */
  function agentLinks(): BpfLink[] {
    links ??= readdirSync(join(pinDir, 'links')).map((f) => bpftool('link', 'show', 'pinned', join(pinDir, 'links', f)) as BpfLink);
    return links;
  }

  /** Ids of the agent's pinned programs of bpftool type `type` (tc programs attach without a link). */
  function agentPrograms(type: string): number[] {
    return readdirSync(join(pinDir, 'progs'))
      .map((f) => bpftool('prog', 'show', 'pinned', join(pinDir, 'progs', f)) as { id: number; type: string })
      .filter((p) => p.type === type)
      .map((p) => p.id);
  }

  /** Where bpftool shows the kernel running a hook's program, or undefined. */
  function attachment(hook: string): string | undefined {
    const [kind, what = ''] = hook.split(/[/ ]/);
    switch (kind) {
      case 'cgroup':
      case 'cgroup_skb': {
        const l = agentLinks().find((k) => k.type === 'cgroup' && k.attach_type?.endsWith(what));
        return l && `link ${l.id}, cgroup ${l.attach_type}`;
      }
      case 'tp_btf': {
        const l = agentLinks().find((k) => k.type === 'raw_tracepoint' && k.tp_name === what);
        return l && `link ${l.id}, tracepoint ${l.tp_name}`;
      }
      case 'tc': {
        const ours = new Set(agentPrograms('sched_cls'));
        const [dev] = bpftool('net', 'show', 'dev', net!.hostInterface) as { tc?: { id: number; kind: string }[] }[];
        const on = (dev?.tc ?? []).filter((t) => ours.has(t.id));
        return on.length > 0 ? `${on.map((t) => `${t.kind} prog ${t.id}`).join(', ')} on ${net!.hostInterface}` : undefined;
      }
      case 'iter': // the census: an iterator the agent runs at each fold, attached to nothing
      case 'fold':
        return 'run by the agent at each fold (nothing stays attached)';
      default:
        throw new Error(`kernel-vm/features.test.ts does not know where bpftool shows a '${kind}' hook: teach attachment() about it`);
    }
  }

  beforeAll(async () => {
    try {
      agent = await startAgent({ dir: tempDir('ubia-features-'), pinDir, meterMode: mode });
      const r = cli(agent.socket, ['status', '--json']);
      expect(r.code, r.stderr).toBe(0);
      status = JSON.parse(r.stdout) as StatusResult;
    } catch (e) {
      startError = humanLines((e as Error).message);
    }
  });

  afterAll(async () => {
    await agent?.stop();
    await removeMeter(pinDir);
  });

  it('starts, and ubia status answers', () => {
    const { meter } = started(true);
    expect(meter.kernelRelease).toBe(release());
    // precise needs the per-call tracepoints; without them the agent runs the default mode
    const precise = mode === 'precise' && kernelHasTracepoint('sock_send_length') && kernelHasTracepoint('sock_recv_length');
    expect(meter.mode).toBe(precise ? 'precise' : 'default');
  });

  it("says of each hook whether this kernel has it, as the kernel's BTF does, and what lacking it costs", () => {
    const { hooks, mode: inUse } = started().meter;
    console.log(
      `kernel ${release()}: ${mode} mode asked for, ${inUse} in use\n` +
        hooks.map((h) => `  ${h.active ? '[x]' : h.available ? '[ ]' : '[-]'} ${h.name}: ${h.detail}`).join('\n'),
    );
    expect(hooks.length).toBeGreaterThan(0);
    for (const h of hooks) {
      // the core meter needs nothing newer than 5.10, the oldest kernel tested: only
      // tracepoints may be missing
      const has = h.name.startsWith('tp_btf/') ? kernelHasTracepoint(h.name.slice('tp_btf/'.length)) : true;
      expect(h.available, `${h.name}: available`).toBe(has);
      expect(h.active && !h.available, `${h.name}: active though the kernel lacks it`).toBe(false);
      expect(h.detail, h.name).not.toBe('');
    }
  });

  it('has each hook it calls active attached in the kernel', () => {
    const hooks = started().meter.hooks.filter((h) => h.active);
    expect(hooks.length).toBeGreaterThan(0);
    const seen = hooks.map((h) => ({ hook: h.name, attachment: attachment(h.name) ?? 'NOT ATTACHED' }));
    console.log(seen.map((s) => `  ${s.hook}: ${s.attachment}`).join('\n'));
    expect(seen.filter((s) => s.attachment === 'NOT ATTACHED')).toEqual([]);
  });
});
