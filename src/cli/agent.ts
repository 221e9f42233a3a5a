// `ubia agent [--config FILE] [--daemon]`: loads the config, wires the real kernel meter,
// NSS look-ups and exporters into the agent, and maps signals: SIGTERM/SIGINT flush and
// exit 0, SIGHUP reloads the config.
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { groupMembers, missingBpfCapabilities, openMeter, withoutBpfCapabilities, peerCredentials, primaryGroup, sdNotify, userByName, userName } from '../kernel/index.js';
import { openQuotaEnforcer } from '../kernel/quota.js';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig, type LoadedConfig } from '../config/load.js';
import { createLogger } from '../log.js';
import { startAgent } from '../agent/agent.js';
import { createRequestHandler } from '../control/handlers.js';
import { startControlServer, type Caller } from '../control/server.js';
import { scopeOf } from '../control/scope.js';
import { adminSocketOf } from '../control/protocol.js';
import { startDaemon } from './daemon.js';
import { createExporters } from '../agent/exporters.js';
import { checkTrustedFile, prepareDirectory, tightenLedgerFiles, UnsafePathError } from '../agent/paths.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

export interface AgentCommandOptions {
  config?: string;
  daemon?: boolean;
}

/** Runs the agent until a signal stops it; resolves with the process exit code. */
export async function runAgentCommand(opts: AgentCommandOptions): Promise<number> {
  // an ordinary user: one line before anything is touched (a partial set of capabilities
  // is left to the kernel, whose refusal the meter explains by name)
  if (withoutBpfCapabilities()) {
    process.stderr.write(`ubia agent: must run as root (it loads eBPF programs; missing ${missingBpfCapabilities().join(', ')}): sudo ubia agent, or systemctl start ubia\n`);
    return 1;
  }
  // whatever started us (a shell, `--daemon`, systemd): what we create is root's alone;
  // the few things meant for others (the control socket and its directory) get their
  // modes set explicitly
  process.umask(0o077);
  let loaded: LoadedConfig;
  try {
    checkTrustedFile(opts.config ?? DEFAULT_CONFIG_PATH, 'the config file');
    loaded = loadConfig(opts.config);
  } catch (e) {
    if (!(e instanceof ConfigError) && !(e instanceof UnsafePathError)) throw e;
    process.stderr.write(`ubia agent: ${e.message}\n`);
    return 1;
  }
  const { config } = loaded;
  if (opts.daemon) {
    const logFile = config.log.daemon_file;
    try {
      prepareDirectory(dirname(logFile), 0o700, 'log.daemon_file');
      const pid = await startDaemon(opts.config ? ['--config', opts.config] : [], loaded.config.control.socket, logFile);
      process.stdout.write(`ubia agent started (pid ${pid}); logs in ${logFile}\n`);
      return 0;
    } catch (e) {
      process.stderr.write(`ubia agent: ${(e as Error).message}\n`);
      return 1;
    }
  }

  try {
    prepareDirectory(dirname(config.ledger.path), 0o700, 'ledger.path');
    tightenLedgerFiles(config.ledger.path);
    // every local user connects to the control socket (what each sees is decided per uid)
    prepareDirectory(dirname(config.control.socket), 0o755, 'control.socket');
  } catch (e) {
    if (!(e instanceof UnsafePathError)) throw e;
    process.stderr.write(`ubia agent: ${e.message}\n`);
    return 1;
  }

  // `pidof ubia-agent` / `pkill ubia-agent` find it, rather than every `node` process
  process.title = 'ubia-agent';
  const logger = createLogger(loaded.config.log.level);
  let agent;
  try {
    agent = await startAgent(loaded, logger, {
      // the accounting decides when a fold is worth its cost
      openMeter: (o) => openMeter({ ...o, foldOnRead: false }),
      openQuotaEnforcer,
      userName,
      groupMembers,
      userByName,
      primaryGroup,
      serveControl: (state, o) => {
        const scope = (caller: Caller) => scopeOf(caller, state.access(), state.directory);
        return startControlServer({
          ...o,
          adminPath: adminSocketOf(o.path),
          adminGid: () => {
            const group = state.access().adminGroup;
            return group === '' ? undefined : groupMembers(group)?.gid;
          },
          peerCredentials,
          // root and admins get the reserved connection slots and are served first
          isAdmin: (caller) => scope(caller).role === 'admin',
          handle: createRequestHandler({ ...state, scopeOf: scope }),
        });
      },
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
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return logger.info({ signal }, 'already stopping; the shutdown under way goes on');
      stopping = true;
      void agent.stop(signal).then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    // `on`, not `once`: a second SIGTERM (`timeout -s TERM` sends two) must find our
    // handler, not the default action that kills us before the exporters are closed
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => void agent.reload());
  });
}
