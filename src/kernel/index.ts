// The kernel meter (real: eBPF programs through the native addon). Opens or resumes the
// pinned meter, reads monotonic counters, and delivers flow-ended / process-exited
// events, including those the ring buffer could not carry.
import { release } from 'node:os';
import { addon, rows, type NativeEvents, type NativeMeter } from './native.js';
import type { FlowRecord, InterfaceCounters, MeterEvent, MeterHealth, MeterStatus, ProcessCounters, UnattributedCounters, UserCounters } from './types.js';

export * from './types.js';
export { userName, groupMembers, peerCredentials, sdNotify } from './native.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/ubia';

export interface MeterOptions {
  /** where maps, links and programs are pinned (a directory on bpffs) */
  pinDir?: string;
  /** size of the per-flow map (a pinned map keeps the size it was made with) */
  flowCapacity?: number;
}

export interface Meter {
  status(): MeterStatus;
  readUsers(): UserCounters[];
  readProcesses(): ProcessCounters[];
  readFlows(): FlowRecord[];
  readInterfaces(): InterfaceCounters[];
  /** packets with no user socket behind them, as the cgroup layer saw them */
  readUnattributed(): UnattributedCounters;
  health(): MeterHealth;
  onEvent(cb: (e: MeterEvent) => void): void;
  /** deliver queued events now (they also arrive on their own from the event loop) */
  drainEvents(): void;
  /** remove a dead process's entries once its final values are recorded */
  forgetProcess(pid: number): void;
  forgetProcesses(pids: number[]): void;
  /** default keeps programs attached and maps pinned: the kernel goes on counting */
  close(opts?: { detach?: boolean }): void;
}

export class MeterError extends Error {
  override name = 'MeterError';
}

export function openMeter(opts: MeterOptions = {}): Meter {
  const pinDir = opts.pinDir ?? DEFAULT_PIN_DIR;
  let native: NativeMeter;
  try {
    native = new addon.Meter({ pinDir, ...(opts.flowCapacity ? { flowCapacity: opts.flowCapacity } : {}) });
  } catch (err) {
    throw new MeterError((err as Error).message);
  }
  const listeners: Array<(e: MeterEvent) => void> = [];
  const emit = (events: MeterEvent[]) => {
    for (const e of events) for (const l of listeners) l(e);
  };
  const emitNative = (ev: NativeEvents) => {
    const flows = rows(ev.flowsEnded).map((flow): MeterEvent => ({ kind: 'flowEnded', flow }));
    const exits = rows(ev.processesExited).map((p): MeterEvent => ({ kind: 'processExited', ...p }));
    emit([...flows, ...exits]);
  };
  native.onEvents(emitNative);
  let droppedSeen = 0;
  const reportedExits = new Set<number>();

  // Events the ring buffer could not carry: the flow stays in the map marked ended, and
  // an exited process is found by its pid no longer existing.
  const sweepAfterDrops = (procs: ProcessCounters[]) => {
    const dropped = native.readStats().eventsDropped;
    if (dropped === droppedSeen) return;
    droppedSeen = dropped;
    const gone: MeterEvent[] = [];
    for (const pid of new Set(procs.map((p) => p.pid))) {
      if (pid === 0 || reportedExits.has(pid) || pidAlive(pid)) continue;
      reportedExits.add(pid);
      gone.push({ kind: 'processExited', pid, exitedMs: Date.now() });
    }
    emit(gone);
  };

  return {
    status: () => ({ kernelRelease: release(), ...native.status() }),
    readUsers: () => rows(native.readUsers()),
    readProcesses: () => {
      const procs = rows(native.readProcesses());
      sweepAfterDrops(procs);
      return procs;
    },
    readFlows: () => {
      const active: FlowRecord[] = [];
      const ended: MeterEvent[] = [];
      for (const { ended: isEnded, ...flow } of rows(native.readFlows())) {
        if (isEnded) ended.push({ kind: 'flowEnded', flow });
        else active.push(flow);
      }
      emit(ended);
      for (const e of ended) if (e.kind === 'flowEnded') native.forgetFlow(e.flow.cookie);
      return active;
    },
    readInterfaces: () => native.readInterfaces(),
    readUnattributed: () => native.readStats().unattributed,
    health: () => {
      const s = native.readStats();
      return {
        overflows: { users: s.userOverflows, processes: s.processOverflows, flows: s.flowOverflows, interfaces: s.interfaceOverflows },
        eventsDropped: s.eventsDropped,
      };
    },
    onEvent: (cb) => {
      listeners.push(cb);
    },
    drainEvents: () => emitNative(native.pollEvents()),
    forgetProcess: (pid) => {
      native.forgetProcesses([pid]);
      reportedExits.delete(pid);
    },
    forgetProcesses: (pids) => {
      native.forgetProcesses(pids);
      for (const p of pids) reportedExits.delete(p);
    },
    close: (o) => native.close(o?.detach ?? false),
  };
}

/** Detach every program a meter left pinned under pinDir, without loading one. */
export function detachMeter(pinDir: string = DEFAULT_PIN_DIR): void {
  addon.detachPinned(pinDir);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
