// Workloads: what people call the cgroup a socket's owner ran in — a systemd unit, a
// Slurm job or step, a container. The kernel records the owner's cgroup id; the agent
// turns it into the cgroup's path (kernel/cgroups.ts) and the path into a Workload by a
// table of rules that is data (`[[units.rule]]` in ubia.toml, DEFAULT_WORKLOAD_RULES
// below when absent). This module is the shared vocabulary of that dimension: the
// ledger, the control socket, the CLI and the exporters all speak it.

import type { TrafficCounters } from './counters.js';

export const WORKLOAD_KINDS = ['service', 'scope', 'slice', 'job', 'step', 'container', 'other'] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

export interface Workload {
  kind: WorkloadKind;
  /** what people call it: "nginx.service", "session-12.scope", "job_1234/step_0",
   *  "docker-<id>.scope", "(unknown)" when the cgroup could not be named */
  name: string;
  /** the Slurm job id ("1234") of a job or step */
  jobId?: string;
  /** the Slurm step ("0", "batch", "extern") of a step */
  stepId?: string;
  /** the container's id (Docker, Podman, CRI: the 64 hex digits; systemd-nspawn: the
   *  machine name) */
  containerId?: string;
  /** the cgroup v2 path below the cgroup2 mount ("/system.slice/nginx.service"); ""
   *  when unknown (owner not yet known, or the cgroup was gone before it was seen) */
  cgroupPath: string;
  /** the kernel's cgroup id (the inode number of the cgroup's directory) while the agent
   *  knows it (this boot); absent for workloads read back from the ledger */
  cgroupId?: bigint;
}

/** One user's traffic in one workload over one poll interval (deltas, the counted
 *  scopes summed): what the agent hands to exporters beside the per-user usage. A
 *  user's workloads of one interval sum exactly to that user's usage of the interval. */
export interface WorkloadUsage extends TrafficCounters {
  uid: number;
  /** NSS name, or the uid as a string when it has none */
  user: string;
  workload: Workload;
}

/** How `ubia units --by` groups workloads: per workload (unit), per Slurm job (steps
 *  together), per container. */
export type WorkloadGrouping = 'unit' | 'job' | 'container';

/** A rule of the table: `match` (a JavaScript regular expression, tried against the
 *  cgroup path) names the workload; the other fields are templates where `${group}`
 *  stands for a named group of the match and `$1`… for a numbered one. */
export interface WorkloadRule {
  match: string;
  kind: WorkloadKind;
  name: string;
  job?: string;
  step?: string;
  container?: string;
}

/** Tried in order, the first that matches names the workload; a path none matches is
 *  `other`, named by its path. Containers and Slurm come before the generic systemd
 *  rules: a job's step lives in slurmstepd.scope, a container in a .scope of its own. */
export const DEFAULT_WORKLOAD_RULES: readonly WorkloadRule[] = [
  // Slurm's cgroup/v2 plugin: <slice>/[<node>_]slurmstepd.scope/job_<id>/step_<step>/{slurm,user/task_<n>}
  {
    match: String.raw`/[^/]*slurmstepd\.scope/job_(?<job>\d+)/step_(?<step>[^/]+)(?:/|$)`,
    kind: 'step',
    name: 'job_${job}/step_${step}',
    job: '${job}',
    step: '${step}',
  },
  { match: String.raw`/[^/]*slurmstepd\.scope/job_(?<job>\d+)(?:/|$)`, kind: 'job', name: 'job_${job}', job: '${job}' },
  // Docker (systemd cgroup driver, then cgroupfs driver), Podman, Kubernetes' containerd and CRI-O
  { match: String.raw`/(?<unit>docker-(?<id>[0-9a-f]{12,64})\.scope)(?:/|$)`, kind: 'container', name: '${unit}', container: '${id}' },
  { match: String.raw`^/docker/(?<id>[0-9a-f]{12,64})(?:/|$)`, kind: 'container', name: 'docker/${id}', container: '${id}' },
  { match: String.raw`/(?<unit>libpod-(?<id>[0-9a-f]{12,64})\.scope)(?:/|$)`, kind: 'container', name: '${unit}', container: '${id}' },
  { match: String.raw`/(?<unit>(?:cri-containerd|crio)-(?<id>[0-9a-f]{64})\.scope)(?:/|$)`, kind: 'container', name: '${unit}', container: '${id}' },
  // systemd-nspawn (and machines registered with machined)
  { match: String.raw`/machine\.slice/(?<unit>systemd-nspawn@(?<m>[^/]+)\.service)(?:/|$)`, kind: 'container', name: '${unit}', container: '${m}' },
  { match: String.raw`/machine\.slice/(?<unit>machine-(?<m>[^/]+)\.scope)(?:/|$)`, kind: 'container', name: '${unit}', container: '${m}' },
  // systemd units: the innermost .service or .scope (the greedy `^.*/` takes a user's
  // app.slice/x.service rather than the user@1000.service around it; each rule gives way
  // to a unit of the other type deeper down), else the slice a process sits in
  { match: String.raw`^.*/(?<unit>[^/]+\.service)(?!/.*\.scope(?:/|$))(?:/|$)`, kind: 'service', name: '${unit}' },
  { match: String.raw`^.*/(?<unit>[^/]+\.scope)(?!/.*\.service(?:/|$))(?:/|$)`, kind: 'scope', name: '${unit}' },
  { match: String.raw`^.*/(?<unit>[^/]+\.slice)$`, kind: 'slice', name: '${unit}' },
];

/** The name of a workload whose cgroup could not be named. */
export const UNKNOWN_WORKLOAD = '(unknown)';

interface CompiledRule {
  re: RegExp;
  rule: WorkloadRule;
}

const TEMPLATE = /\$\{(\w+)\}|\$(\d)/g;

function expand(template: string, m: RegExpExecArray): string {
  return template.replace(TEMPLATE, (_, named: string | undefined, index: string | undefined) =>
    (named !== undefined ? m.groups?.[named] : m[Number(index)]) ?? '',
  );
}

/** A rule's pattern as a RegExp, or an error that names the rule and what is wrong. */
export function compileWorkloadRule(rule: WorkloadRule): RegExp {
  try {
    return new RegExp(rule.match);
  } catch (err) {
    throw new Error(`units rule ${JSON.stringify(rule.match)}: not a valid regular expression (${(err as Error).message})`);
  }
}

/**
 * The function that names a cgroup path by `rules` (first match wins; none: `other`,
 * named by its path). Cached per path: the agent asks for every process row it books.
 */
export function workloadNamer(rules: readonly WorkloadRule[]): (cgroupPath: string) => Workload {
  const compiled: CompiledRule[] = rules.map((rule) => ({ re: compileWorkloadRule(rule), rule }));
  const cache = new Map<string, Workload>();
  return (cgroupPath) => {
    let w = cache.get(cgroupPath);
    if (!w) {
      w = nameWorkload(compiled, cgroupPath);
      if (cache.size >= 100_000) cache.clear();
      cache.set(cgroupPath, w);
    }
    return w;
  };
}

function nameWorkload(rules: readonly CompiledRule[], cgroupPath: string): Workload {
  if (cgroupPath === '') return { kind: 'other', name: UNKNOWN_WORKLOAD, cgroupPath };
  for (const { re, rule } of rules) {
    const m = re.exec(cgroupPath);
    if (!m) continue;
    const w: Workload = { kind: rule.kind, name: expand(rule.name, m) || cgroupPath, cgroupPath };
    const job = rule.job && expand(rule.job, m);
    const step = rule.step && expand(rule.step, m);
    const container = rule.container && expand(rule.container, m);
    if (job) w.jobId = job;
    if (step) w.stepId = step;
    if (container) w.containerId = container;
    return w;
  }
  return { kind: 'other', name: cgroupPath, cgroupPath };
}

/** The group a workload falls in for `ubia units --by`: its name, its Slurm job
 *  ("job_1234"), its container id; workloads without a job or container are grouped by
 *  their own name. */
export function workloadGroup(w: Workload, by: WorkloadGrouping): string {
  if (by === 'job' && w.jobId !== undefined) return `job_${w.jobId}`;
  if (by === 'container' && w.containerId !== undefined) return w.containerId;
  return w.name;
}
