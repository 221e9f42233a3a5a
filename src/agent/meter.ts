// What the agent needs from the kernel meter (src/kernel openMeter()'s Meter has this
// shape). Declared here so the accounting loop and the benchmark depend only on it.
import type {
  FlowRecord,
  InterfaceCounters,
  MeterEvent,
  MeterHealth,
  MeterStatus,
  ProcessCounters,
  UserCounters,
} from '../kernel/types.js';

export interface MeterReader {
  status(): MeterStatus;
  readUsers(): UserCounters[];
  readProcesses(): ProcessCounters[];
  readFlows(): FlowRecord[];
  readInterfaces(): InterfaceCounters[];
  health(): MeterHealth;
  onEvent(cb: (e: MeterEvent) => void): void;
  forgetProcess(pid: number): void;
  close(opts?: { detach?: boolean }): void;
}
