// What the agent needs from the kernel meter (src/kernel's Meter): the accounting loop,
// the control handlers and the benchmark's synthetic meter depend only on this much.
import type { Meter } from '../kernel/index.js';

export type MeterReader = Pick<
  Meter,
  'status' | 'fold' | 'readUserColumns' | 'readProcessColumns' | 'readFlowColumns' | 'readInterfaces' | 'health' | 'onEvent' | 'forgetProcess' | 'close'
>;
