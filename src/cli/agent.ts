// `ubia agent [--config FILE] [--daemon]`: loads the config, wires the real kernel meter,
// NSS look-ups and exporters into the agent, and maps signals: SIGTERM/SIGINT flush and
// exit 0, SIGHUP reloads the config.
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { groupMembers, openMeter, peerCredentials, sdNotify, userName } from '../kernel/index.js';
import { ConfigError, loadConfig, type LoadedConfig } from '../config/load.js';
import { createLogger } from '../log.js';
import { startAgent } from '../agent/agent.js';
import { createRequestHandler } from '../control/handlers.js';
import { startControlServer } from '../control/server.js';
import { startDaemon } from './daemon.js';
import { createExporters } from '../agent/exporters.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

export interface AgentCommandOptions {
  config?: string;
  daemon?: boolean;
}

/** Runs the agent until a signal stops it; resolves with the process exit code. */
export async function runAgentCommand(opts: AgentCommandOptions): Promise<number> {
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig(opts.config);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`ubia agent: ${e.message}\n`);
    return 1;
  }
  if (opts.daemon) {
    const logFile = loaded.config.log.daemon_file;
    try {
      const pid = await startDaemon(opts.config ? ['--config', opts.config] : [], loaded.config.control.socket, logFile);
      process.stdout.write(`ubia agent started (pid ${pid}); logs in ${logFile}\n`);
      return 0;
    } catch (e) {
      process.stderr.write(`ubia agent: ${(e as Error).message}\n`);
      return 1;
    }
  }

  // `pidof ubia-agent` / `pkill ubia-agent` find it, rather than every `node` process
  process.title = 'ubia-agent';
  const logger = createLogger(loaded.config.log.level);
  let agent;
  try {
    agent = await startAgent(loaded, logger, {
      // the accounting decides when a fold is worth its cost
      openMeter: (o) => openMeter({ ...o, foldOnRead: false }),
      userName,
      groupMembers,
      serveControl: (state, o) => startControlServer({ ...o, peerCredentials, isAdmin: state.isAdmin, handle: createRequestHandler(state) }),
      sdNotify,
      createExporters,
      hostName: hostname(),
      version,
    });
  } catch (e) {
    logger.fatal({ err: e }, 'the agent could not start');
    process.stderr.write(`ubia agent: could not start: ${(e as Error).message}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      void agent.stop(signal).then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.on('SIGHUP', () => void agent.reload());
  });
}
