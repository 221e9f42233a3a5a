// CPU time of a workload's processes and of the softirq threads, which the benchmarks
// divide by the traffic it moved (steadier than throughput on a shared machine: time the
// workload waits for a CPU is not in it).
import { readFileSync, readdirSync } from 'node:fs';

/** CPU time (ns) the tasks of these processes have run, every thread. */
export function processCpuNs(pids: number[]): number {
  let ns = 0;
  for (const pid of pids) {
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // gone
    }
    for (const tid of tids) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // the thread ended meanwhile
      }
    }
  }
  return ns;
}

/** The softirq threads: what the transfer's packets cost when softirq runs deferred (in
 *  task context, without CONFIG_IRQ_TIME_ACCOUNTING, it counts to the task it interrupts). */
export function ksoftirqdPids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/comm`, 'utf8').startsWith('ksoftirqd/');
      } catch {
        return false;
      }
    })
    .map(Number);
}
