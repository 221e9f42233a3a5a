// A test-owned cgroup2 subtree with the layout Slurm's cgroup/v2 plugin makes for jobs
// (<root>/system.slice/slurmstepd.scope/job_<id>/step_<n>), so tests of units and jobs run
// without Slurm: processes are moved in by writing their pid to cgroup.procs, and a job
// ends as Slurm ends it, by removing its directories (children first, once empty).
import { mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cgroup2Mount } from '../../src/kernel/cgroups.js';

export interface Cgroup {
  /** absolute directory */
  dir: string;
  /** path below the cgroup2 mount, as the agent names it */
  path: string;
  /** cgroup ID (the directory's inode), as the meter records it */
  id: bigint;
}

export interface SlurmCgroups {
  /** the cgroup2 mount */
  mount: string;
  /** job_<id>/step_<step>, made with its parents as needed */
  step(jobId: number, step?: string): Cgroup;
  /** job_<id> itself */
  job(jobId: number): Cgroup;
  /** moves a process into a cgroup */
  moveIn(pid: number, cgroup: Cgroup): void;
  /** removes the job's directories (its processes must have exited or moved out) */
  endJob(jobId: number): void;
  /** ends every job still there and removes the subtree */
  dispose(): void;
}

export function slurmCgroups(name = `ubia-test-${process.pid}`): SlurmCgroups {
  const mount = cgroup2Mount();
  if (mount === null) throw new Error('no cgroup2 filesystem mounted: these tests need the unified cgroup hierarchy');
  const top = join(mount, name);
  const scope = join(top, 'system.slice', 'slurmstepd.scope');
  mkdirSync(scope, { recursive: true });
  const jobs = new Map<number, Set<string>>();
  const cgroup = (dir: string): Cgroup => ({ dir, path: dir.slice(mount.length), id: statSync(dir, { bigint: true }).ino });
  const jobDir = (jobId: number) => join(scope, `job_${jobId}`);

  const endJob = (jobId: number): void => {
    for (const step of jobs.get(jobId) ?? []) rmdirSync(join(jobDir(jobId), step));
    rmdirSync(jobDir(jobId));
    jobs.delete(jobId);
  };

  return {
    mount,
    step(jobId, step = '0') {
      const dir = join(jobDir(jobId), `step_${step}`);
      mkdirSync(dir, { recursive: true });
      let steps = jobs.get(jobId);
      if (!steps) jobs.set(jobId, (steps = new Set()));
      steps.add(`step_${step}`);
      return cgroup(dir);
    },
    job: (jobId) => cgroup(jobDir(jobId)),
    moveIn(pid, c) {
      writeFileSync(join(c.dir, 'cgroup.procs'), String(pid));
      const now = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      if (!now.includes(c.path)) throw new Error(`process ${pid} did not move to ${c.path}: ${now}`);
    },
    endJob,
    dispose() {
      for (const jobId of [...jobs.keys()]) endJob(jobId);
      for (const d of [scope, join(top, 'system.slice'), top]) rmdirSync(d);
    },
  };
}
