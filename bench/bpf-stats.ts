// The kernel's own accounting of BPF programs' run time (kernel.bpf_stats_enabled), for
// one meter only: other meters on the machine (tests' pin dirs) run programs of the same
// names, so a meter's programs are told by the maps they use (those it pinned).
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

interface ProgInfo {
  id: number;
  name?: string;
  run_time_ns?: number;
  run_cnt?: number;
  map_ids?: number[];
}

/** Run time and run count per program name, summed over programs of the same name. */
export type ProgramTimes = Map<string, { ns: number; runs: number }>;

const bpftool = <T>(args: string[]): T => JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8' })) as T;

/** The ids of the programs that use any of the meter's maps (those pinned under pinDir). */
export function meterProgramIds(pinDir: string): number[] {
  const maps = new Set(readdirSync(`${pinDir}/maps`).map((m) => bpftool<{ id: number }>(['map', 'show', 'pinned', `${pinDir}/maps/${m}`]).id));
  return bpftool<ProgInfo[]>(['prog', 'show'])
    .filter((p) => p.map_ids?.some((id) => maps.has(id)))
    .map((p) => p.id);
}

/** The ids of the loaded programs whose names start with prefix. */
export function programIdsNamed(prefix: string): number[] {
  return bpftool<ProgInfo[]>(['prog', 'show'])
    .filter((p) => p.name?.startsWith(prefix))
    .map((p) => p.id);
}

/** The programs' accumulated run time and count now (bpf_stats must be on). */
export function programTimes(ids: number[]): ProgramTimes {
  const wanted = new Set(ids);
  const out: ProgramTimes = new Map();
  for (const p of bpftool<ProgInfo[]>(['prog', 'show'])) {
    if (!wanted.has(p.id) || !p.name) continue;
    const t = out.get(p.name) ?? { ns: 0, runs: 0 };
    out.set(p.name, { ns: t.ns + (p.run_time_ns ?? 0), runs: t.runs + (p.run_cnt ?? 0) });
  }
  return out;
}

/** What ran between two snapshots, per program. */
export function timesSince(before: ProgramTimes, after: ProgramTimes): ProgramTimes {
  const out: ProgramTimes = new Map();
  for (const [name, a] of after) {
    const b = before.get(name) ?? { ns: 0, runs: 0 };
    out.set(name, { ns: a.ns - b.ns, runs: a.runs - b.runs });
  }
  return out;
}

/** Runs `body` with kernel.bpf_stats_enabled on (it adds ~40 ns to every program run on
 *  the machine, so only while measuring). */
export async function withBpfStats<T>(body: () => Promise<T> | T): Promise<T> {
  execFileSync('sysctl', ['-qw', 'kernel.bpf_stats_enabled=1']);
  try {
    return await body();
  } finally {
    execFileSync('sysctl', ['-qw', 'kernel.bpf_stats_enabled=0']);
  }
}
