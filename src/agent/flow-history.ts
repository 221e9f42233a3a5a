// The flow store of [history], opened at the start (its keys enabled and path take effect
// only at a restart). It is optional to the agent: without it, usage is still counted.
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { UbiaConfig } from '../config/config.js';
import type { FlowStore } from '../history/store.js';

/** The flow store, or undefined when [history] is off or the store does not open. */
export async function openFlowHistory(config: UbiaConfig, logger: Logger): Promise<FlowStore | undefined> {
  if (!config.history.enabled) return undefined;
  const path = config.history.path || join(dirname(config.ledger.path), 'flows', 'flows.duckdb');
  try {
    // loaded only when on: DuckDB alone adds ≈ 37 MiB to the agent's resident memory
    const { FlowStore } = await import('../history/store.js');
    return await FlowStore.open(path);
  } catch (err) {
    logger.error({ err, path }, 'cannot open the flow store; running without flow history (`ubia flows --since` answers that it keeps none)');
    return undefined;
  }
}
