// The units rules name every cgroup layout the issue lists: systemd units (system and a
// user's manager), sessions, Slurm's cgroup/v2 jobs and steps, Docker, Podman, CRI and
// systemd-nspawn containers; rules from the config come first and are data.
import { describe, expect, it } from 'vitest';
import { DEFAULT_WORKLOAD_RULES, UNKNOWN_WORKLOAD, workloadGroup, workloadNamer, type WorkloadRule } from '../src/core/workload.js';
import { parseConfig } from '../src/config/load.js';

const name = workloadNamer(DEFAULT_WORKLOAD_RULES);
const DOCKER = 'f'.repeat(60) + '0123';
const PODMAN = '0a1b2c3d4e5f'.repeat(5) + 'abcd';

describe('default units rules', () => {
  it.each([
    ['/system.slice/nginx.service', { kind: 'service', name: 'nginx.service' }],
    ['/system.slice/nginx.service/worker', { kind: 'service', name: 'nginx.service' }],
    ['/user.slice/user-1000.slice/user@1000.service/app.slice/x.service', { kind: 'service', name: 'x.service' }],
    ['/user.slice/user-1000.slice/user@1000.service/init.scope', { kind: 'scope', name: 'init.scope' }],
    ['/user.slice/user-1000.slice/user@1000.service', { kind: 'service', name: 'user@1000.service' }],
    ['/user.slice/user-1000.slice/session-12.scope', { kind: 'scope', name: 'session-12.scope' }],
    ['/system.slice/run-u42.service', { kind: 'service', name: 'run-u42.service' }],
    ['/user.slice/user-1000.slice', { kind: 'slice', name: 'user-1000.slice' }],
    ['/init.scope', { kind: 'scope', name: 'init.scope' }],
    ['/system.slice/slurmstepd.scope/job_1234/step_0/user/task_0', { kind: 'step', name: 'job_1234/step_0', jobId: '1234', stepId: '0' }],
    ['/system.slice/slurmstepd.scope/job_1234/step_batch/user/task_0', { kind: 'step', name: 'job_1234/step_batch', jobId: '1234', stepId: 'batch' }],
    ['/system.slice/slurmstepd.scope/job_1234/step_extern/slurm', { kind: 'step', name: 'job_1234/step_extern', jobId: '1234', stepId: 'extern' }],
    ['/system.slice/node7_slurmstepd.scope/job_99/step_3', { kind: 'step', name: 'job_99/step_3', jobId: '99', stepId: '3' }],
    ['/system.slice/slurmstepd.scope/job_1234', { kind: 'job', name: 'job_1234', jobId: '1234' }],
    ['/system.slice/slurmstepd.scope/system', { kind: 'scope', name: 'slurmstepd.scope' }],
    [`/system.slice/docker-${DOCKER}.scope`, { kind: 'container', name: `docker-${DOCKER}.scope`, containerId: DOCKER }],
    [`/docker/${DOCKER}`, { kind: 'container', name: `docker/${DOCKER}`, containerId: DOCKER }],
    [`/machine.slice/libpod-${PODMAN}.scope/container`, { kind: 'container', name: `libpod-${PODMAN}.scope`, containerId: PODMAN }],
    [
      `/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${PODMAN}.scope/container`,
      { kind: 'container', name: `libpod-${PODMAN}.scope`, containerId: PODMAN },
    ],
    [`/machine.slice/libpod-conmon-${PODMAN}.scope`, { kind: 'scope', name: `libpod-conmon-${PODMAN}.scope` }],
    [
      `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-${DOCKER}.scope`,
      { kind: 'container', name: `cri-containerd-${DOCKER}.scope`, containerId: DOCKER },
    ],
    ['/machine.slice/systemd-nspawn@web.service/payload/system.slice/nginx.service', { kind: 'container', name: 'systemd-nspawn@web.service', containerId: 'web' }],
    ['/machine.slice/machine-qemu\\x2d1\\x2dvm.scope', { kind: 'container', name: 'machine-qemu\\x2d1\\x2dvm.scope', containerId: 'qemu\\x2d1\\x2dvm' }],
    ['/', { kind: 'other', name: '/' }],
    ['/ubia-test/a', { kind: 'other', name: '/ubia-test/a' }],
    ['', { kind: 'other', name: UNKNOWN_WORKLOAD }],
  ])('%s', (path, expected) => {
    expect(name(path)).toEqual({ ...expected, cgroupPath: path });
  });

  it('groups by job and container, and by name where a workload has neither', () => {
    const step0 = name('/system.slice/slurmstepd.scope/job_7/step_0');
    const batch = name('/system.slice/slurmstepd.scope/job_7/step_batch');
    expect(workloadGroup(step0, 'job')).toBe('job_7');
    expect(workloadGroup(batch, 'job')).toBe('job_7');
    expect(workloadGroup(step0, 'unit')).toBe('job_7/step_0');
    expect(workloadGroup(name(`/system.slice/docker-${DOCKER}.scope`), 'container')).toBe(DOCKER);
    expect(workloadGroup(name('/system.slice/nginx.service'), 'job')).toBe('nginx.service');
  });
});

describe('units rules from the config', () => {
  it('come before the built-in ones, with named and numbered groups', () => {
    const config = parseConfig(
      String.raw`
[[units.rule]]
match = '/batch\.slice/(?<unit>runner-(?<n>\d+)\.service)(?:/|$)'
kind = "job"
name = "runner ${'${n}'}"
job = "r$1"
`,
      'test.toml',
    );
    const rules: WorkloadRule[] = [...(config.units.rule ?? []), ...(config.units.default_rules ? DEFAULT_WORKLOAD_RULES : [])];
    const named = workloadNamer(rules);
    expect(named('/batch.slice/runner-17.service')).toEqual({ kind: 'job', name: 'runner 17', jobId: 'rrunner-17.service', cgroupPath: '/batch.slice/runner-17.service' });
    expect(named('/system.slice/nginx.service').name).toBe('nginx.service');
  });

  it('refuses a pattern that is no regular expression, naming the key', () => {
    expect(() => parseConfig('[[units.rule]]\nmatch = "(unclosed"\nkind = "service"\nname = "x"\n', 'bad.toml')).toThrow(/units\.rule\.0\.match|match.*regular expression/);
  });
});
