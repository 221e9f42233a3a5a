// The kernel meter (real: eBPF programs through the native addon). Opens or resumes the
// pinned meter, reads monotonic counters, and delivers flow-ended / process-exited
// events, including those the ring buffer could not carry.
import { release } from 'node:os';
import { addon, rows, selectRows, type Columns, type NativeEvents, type NativeMeter } from './native.js';
import type { FlowRecord, InterfaceCounters, MeterEvent, MeterHealth, MeterMode, MeterStatus, ProcessCounters, UnattributedCounters, UserCounters } from './types.js';

export * from './types.js';
export { userName, groupMembers, peerCredentials, sdNotify } from './native.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/ubia';
const SWEEP_MS = 30_000;

export interface MeterOptions {
  /** where maps, links and programs are pinned (a directory on bpffs) */
  pinDir?: string;
  /** size of the per-flow map (a pinned map keeps the size it was made with) */
  flowCapacity?: number;
  /** count payload per send/recv call (where the kernel has the tracepoints) */
  mode?: MeterMode;
  /** fold the sockets' pending counts into the totals before each read (default true);
   *  false: reads show the totals as of the last fold() */
  foldOnRead?: boolean;
}

export interface Meter {
  status(): MeterStatus;
  /** moves every open socket's pending counts into the totals (~1 µs per open socket);
   *  needed before reads only when opened with foldOnRead: false */
  fold(): void;
  readUsers(): UserCounters[];
  /** the same as the addon's columns: what the agent's poll loop reads every second */
  readUserColumns(): Columns<UserCounters>;
  readProcesses(): ProcessCounters[];
  /** the same as columns: the agent keeps them between reads and makes rows only when asked */
  readProcessColumns(): Columns<ProcessCounters>;
  readFlows(): FlowRecord[];
  /** the same as columns: rows are made only for whoever needs them (exporters, `ubia flows`) */
  readFlowColumns(): Columns<FlowRecord>;
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
    native = new addon.Meter({
      pinDir,
      ...(opts.flowCapacity ? { flowCapacity: opts.flowCapacity } : {}),
      precise: opts.mode === 'precise',
      foldOnRead: opts.foldOnRead ?? true,
    });
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

  // Processes whose exit no event reported: the ring buffer was full, or their sockets
  // folded bytes into their entry after user space had taken the final figures and
  // removed it (a closed TCP socket still sending). Found by the pid no longer existing,
  // after dropped events and at least every SWEEP_MS.
  let lastSweepMs = 0;
  const sweepDeadProcesses = (pids: ArrayLike<number>) => {
    const dropped = native.readStats().eventsDropped;
    const now = Date.now();
    if (dropped === droppedSeen && now - lastSweepMs < SWEEP_MS) return;
    droppedSeen = dropped;
    lastSweepMs = now;
    const gone: MeterEvent[] = [];
    for (const pid of new Set(Array.from(pids))) {
      if (pid === 0 || reportedExits.has(pid) || pidAlive(pid)) continue;
      reportedExits.add(pid);
      gone.push({ kind: 'processExited', pid, exitedMs: now });
    }
    emit(gone);
  };

  const readProcessColumns = () => {
    const columns = native.readProcesses();
    sweepDeadProcesses(columns.pid);
    return columns;
  };

  // Flows that ended while the ring buffer was full are still in the table, marked: they
  // become flowEnded events (rows made for those few only) and leave the kernel map.
  const readFlowColumns = (): Columns<FlowRecord> => {
    const { ended, ...columns } = native.readFlows();
    const gone: number[] = [];
    for (let i = 0; i < columns.length; i++) if (ended[i]) gone.push(i);
    if (gone.length === 0) return columns;
    const active = Array.from({ length: columns.length }, (_, i) => i).filter((i) => !ended[i]);
    const events = rows(selectRows<FlowRecord>(columns, gone)).map((flow): MeterEvent => ({ kind: 'flowEnded', flow }));
    emit(events);
    for (const e of events) if (e.kind === 'flowEnded') native.forgetFlow(e.flow.cookie);
    return selectRows<FlowRecord>(columns, active);
  };

  return {
    status: () => ({ kernelRelease: release(), ...native.status() }),
    fold: () => native.fold(),
    readUsers: () => rows(native.readUsers()),
    readUserColumns: () => native.readUsers(),
    readProcesses: () => rows(readProcessColumns()),
    readProcessColumns,
    readFlows: () => rows(readFlowColumns()),
    readFlowColumns,
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
