// Placeholder: the kernel meter (eBPF + native addon) lands here. API contract:
//   openMeter(opts: { pinDir?: string; flowCapacity?: number }): Meter
//   Meter.status(): MeterStatus; readUsers(): UserCounters[]; readProcesses(): ProcessCounters[];
//   readFlows(): FlowRecord[]; readInterfaces(): InterfaceCounters[]; health(): MeterHealth;
//   onEvent(cb: (e: MeterEvent) => void): void; forgetProcess(pid: number): void;
//   close(opts?: { detach?: boolean }): void
export * from './types.js';
