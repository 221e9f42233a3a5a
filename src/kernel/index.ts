// The kernel meter (real: eBPF programs through the native addon). Opens or resumes the
// pinned meter, reads monotonic counters, and delivers flow-ended / process-exited
// events, including those the ring buffer could not carry.
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { addon, rows, selectRows, type Columns, type NativeEvents, type NativeMeter } from './native.js';
import type { FlowRecord, HookStatus, InterfaceCounters, MeterEvent, MeterHealth, MeterMode, MeterStatus, ProcessCounters, WireCounters, UserCounters } from './types.js';

export * from './types.js';
export { pinHolders } from './pins.js';
export { openQuotaEnforcer, type QuotaAction, type QuotaEnforcer, type QuotaExemptions, type QuotaVerdict } from './quota.js';
export { userName, userByName, primaryGroup, groupMembers, peerCredentials, sdNotify, rows, type Columns } from './native.js';

const SWEEP_MS = 30_000;

export interface MeterOptions {
  /** where maps, links and programs are pinned (a directory on bpffs; the agent's is
   *  agent.pin_dir, whose default the configuration schema holds) */
  pinDir: string;
  /** size of the per-flow map (a pinned map keeps the size it was made with) */
  flowCapacity?: number;
  /** (uid, scope) slots of the per-user table (a pinned table keeps the size it was made with) */
  userCapacity?: number;
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
  readUnattributed(): WireCounters;
  health(): MeterHealth;
  onEvent(cb: (e: MeterEvent) => void): void;
  /** deliver queued events now (they also arrive on their own from the event loop) */
  drainEvents(): void;
  /** Puts back pins removed while the meter runs (the programs kept counting: the meter
   *  holds them); returns the pin paths that were missing. Throws when it cannot. */
  checkPins(): string[];
  /** remove a dead process's entries once its final values are recorded */
  forgetProcess(pid: number): void;
  forgetProcesses(pids: number[]): void;
  /** default keeps programs attached and maps pinned: the kernel goes on counting */
  close(opts?: { detach?: boolean }): void;
}

export class MeterError extends Error {
  override name = 'MeterError';
}

/** capability(7) numbers: what loading and attaching the meter needs (CAP_SYS_ADMIN
 *  stands in for CAP_BPF and CAP_PERFMON on kernels before 5.8) */
const BPF_CAPABILITIES = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_PERFMON: 38, CAP_BPF: 39 };

function effectiveCapabilities(): bigint {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  return BigInt(`0x${hex}`);
}

/** The capabilities of CAP_NET_ADMIN, CAP_PERFMON and CAP_BPF this process lacks. */
export function missingBpfCapabilities(): string[] {
  const effective = effectiveCapabilities();
  const { CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF } = BPF_CAPABILITIES;
  return Object.entries({ CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF })
    .filter(([, cap]) => ((effective >> BigInt(cap)) & 1n) === 0n)
    .map(([name]) => name);
}

/** Has this process none of the capabilities BPF needs (an ordinary user)? A partial set
 *  is left to the kernel: its refusal, explained by the addon, says which one is missing. */
export function withoutBpfCapabilities(): boolean {
  const effective = effectiveCapabilities();
  return Object.values(BPF_CAPABILITIES).every((cap) => ((effective >> BigInt(cap)) & 1n) === 0n);
}

export function openMeter(opts: MeterOptions): Meter {
  const pinDir = opts.pinDir;
  // before the pin directory is touched: what fails first without privileges depends on
  // how bpffs is mounted (its mode), and the message must not
  if (withoutBpfCapabilities()) {
    throw new MeterError('BPF not permitted: run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN');
  }
  let native: NativeMeter;
  try {
    native = new addon.Meter({
      pinDir,
      ...(opts.flowCapacity ? { flowCapacity: opts.flowCapacity } : {}),
      ...(opts.userCapacity ? { userCapacity: opts.userCapacity } : {}),
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

  // pins put back since the meter opened, shown with the hooks (`ubia status`)
  const repins = { count: 0, lastMs: 0, failing: undefined as string | undefined };
  const checkPins = (): string[] => {
    const missing = native.missingPins();
    if (missing.length === 0) return missing;
    try {
      native.repin();
      repins.failing = undefined;
    } catch (err) {
      repins.failing = (err as Error).message;
      throw new MeterError(`${missing.length} pins under ${pinDir} are gone and could not be put back: ${repins.failing}`);
    }
    repins.count++;
    repins.lastMs = Date.now();
    return missing;
  };
  const pinHook = (): HookStatus[] => {
    if (repins.failing !== undefined) return [{ name: 'pins', available: true, active: false, detail: `gone from ${pinDir} and not put back (${repins.failing}): a restarted agent would start from zero` }];
    if (repins.count === 0) return [];
    return [{ name: 'pins', available: true, active: true, detail: `${pinDir} lost its pins ${repins.count} time(s), last at ${new Date(repins.lastMs).toISOString()}; pinned again, counting never stopped` }];
  };

  return {
    status: () => {
      const st = native.status();
      return { kernelRelease: release(), ...st, hooks: [...st.hooks, ...pinHook()] };
    },
    checkPins,
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
        beyondUserTable: s.beyondUserTable,
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
export function detachMeter(pinDir: string): void {
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
