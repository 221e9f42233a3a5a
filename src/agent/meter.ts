// What the agent needs from the kernel meter (src/kernel's Meter): the accounting loop
// and the control handlers depend only on this much (the accounting tests script it).
import type { Meter } from '../kernel/index.js';

export type MeterReader = Pick<
  Meter,
  'status' | 'checkPins' | 'fold' | 'readUserColumns' | 'readProcessColumns' | 'readFlowColumns' | 'readInterfaces' | 'health' | 'onEvent' | 'forgetProcess' | 'close'
>;
