// SIGHUP: read the configuration file again and hand the agent the new one to apply,
// one reload after the other. A bad file keeps the running configuration; keys that only
// take effect at a restart keep their running values (with a warning); the agent learns
// whether the exporters' sections changed, so it restarts them only then.
import type { Logger } from 'pino';
import type { UbiaConfig } from '../config/config.js';
import { loadConfig } from '../config/load.js';

export interface Reloader {
  /** reads the file and applies it after any reload under way */
  reload(): Promise<void>;
  /** resolves when the reloads asked for so far are done */
  settled(): Promise<void>;
}

export interface ReloaderOptions {
  configFile: string | undefined;
  logger: Logger;
  /** the configuration in force */
  current(): UbiaConfig;
  /** puts `next` in force; `exportersChanged`: the exporters must be re-created */
  apply(next: UbiaConfig, exportersChanged: boolean): Promise<void>;
  /** true once the agent stops: reloads still waiting are dropped */
  stopping(): boolean;
  sdNotify(state: string): boolean;
}

/** Exporter sections whose change means closing and re-creating the exporters. */
const exporterSections = (c: UbiaConfig) => JSON.stringify([c.ipfix, c.diameter, c.otlp, c.prometheus, c.history]);

const RESTART_ONLY: [string, (c: UbiaConfig) => unknown][] = [
  ['ledger.path', (c) => c.ledger.path],
  ['control.socket', (c) => c.control.socket],
  ['agent.pin_dir', (c) => c.agent.pin_dir],
  ['agent.flow_capacity', (c) => c.agent.flow_capacity],
  ['agent.user_capacity', (c) => c.agent.user_capacity],
  ['agent.unconnected_peers', (c) => c.agent.unconnected_peers],
  // the store is opened once, at the start (agent/flow-history.ts)
  ['history.enabled', (c) => c.history.enabled],
  ['history.path', (c) => c.history.path],
];

export function createReloader({ configFile, logger, current, apply, stopping, sdNotify }: ReloaderOptions): Reloader {
  const applyReload = async () => {
    let next: UbiaConfig;
    try {
      next = loadConfig(configFile).config;
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'SIGHUP: the new configuration is invalid; keeping the running one');
      return;
    }
    const old = current();
    for (const [key, get] of RESTART_ONLY) {
      if (JSON.stringify(get(next)) !== JSON.stringify(get(old))) logger.warn({ key }, 'SIGHUP: this key only takes effect after a restart');
    }
    const exportersChanged = exporterSections(next) !== exporterSections(old);
    await apply(
      { ...next, ledger: { ...next.ledger, path: old.ledger.path }, control: { ...next.control, socket: old.control.socket }, agent: { ...next.agent, pin_dir: old.agent.pin_dir, flow_capacity: old.agent.flow_capacity, user_capacity: old.agent.user_capacity },
        history: { ...next.history, enabled: old.history.enabled, path: old.history.path },
      },
      exportersChanged,
    );
    logger.info({ exportersRestarted: exportersChanged }, 'configuration reloaded');
    sdNotify('READY=1');
  };

  // Reloads run one after the other, never interleaved (two would each close the same
  // exporters and each start new ones, leaving one set running unowned). SIGHUPs that
  // arrive while one is waiting to run fold into it: it reads the file as it is then.
  let reloads: Promise<void> = Promise.resolve();
  let reloadWaiting = false;
  const reload = () => {
    if (reloadWaiting) return reloads;
    reloadWaiting = true;
    reloads = reloads.then(async () => {
      reloadWaiting = false;
      if (stopping()) return;
      await applyReload().catch((err: unknown) => logger.error({ err }, 'SIGHUP: the reload failed; the running configuration may be partly applied'));
    });
    return reloads;
  };

  return { reload, settled: () => reloads };
}
