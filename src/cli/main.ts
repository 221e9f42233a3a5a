// The `ubia` command line. Exit codes: 0 done, 1 bad usage or error, 2 agent not running.
import { createRequire } from 'node:module';
import { Command, InvalidArgumentError, Option } from 'commander';
import { AgentNotRunningError, AgentReplyError } from '../control/client.js';
import { localDayStart } from '../control/day.js';
import { parseDuration } from './format.js';
import { runTop } from './top.js';
import { addFlowsCommand } from './flows.js';
import { showProcs, showStatus, showUsers } from './views.js';

const DEFAULT_SOCKET = '/run/ubia/control.sock';
const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

function positiveNumber(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

function timeArg(v: string): number {
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) throw new InvalidArgumentError('expected a date/time, e.g. 2026-11-23T08:00:00Z or 2026-11-23');
  return ms;
}

function durationArg(v: string): number {
  const ms = parseDuration(v);
  if (ms === undefined) throw new InvalidArgumentError('expected a duration such as 90s, 30m, 1h, 2d or 1w');
  return ms;
}

const socketOf = (cmd: Command): string => (cmd.optsWithGlobals() as { socket: string }).socket;

export function buildProgram(): Command {
  const program = new Command('ubia')
    .description('User-Based IP Accounting: who sends and receives what on this host')
    .version(version)
    .addOption(new Option('--socket <path>', 'control socket of the agent').env('UBIA_SOCKET').default(DEFAULT_SOCKET))
    .showHelpAfterError();

  program
    .command('agent')
    .description('run the metering agent (as root)')
    .option('-c, --config <file>', 'config file (default /etc/ubia/ubia.toml; built-in defaults when absent)')
    .option('--daemon', 'detach; logs go to log.daemon_file (/var/log/ubia/agent.log)')
    .action(async (o: { config?: string; daemon?: boolean }) => {
      const { runAgentCommand } = await import('../agent/main.js');
      // exit right away: the kernel meter's event polling would keep the loop alive
      process.exit(await runAgentCommand(o));
    });

  program
    .command('top')
    .description('live per-user rates and today\'s totals (p: processes, q: quit)')
    .option('-i, --interval <seconds>', 'refresh interval', positiveNumber, 1)
    .option('--once', 'print one frame and exit')
    .option('-n, --iterations <n>', 'frames to print when not on a terminal (0 = until interrupted)', (v) => Math.floor(positiveNumber(v)), 0)
    .option('--processes <n>', 'processes shown under each user', (v) => Math.floor(positiveNumber(v)), 5)
    .action(async (o: { interval: number; once?: boolean; iterations: number; processes: number }, cmd: Command) => {
      await runTop({ socket: socketOf(cmd), intervalSeconds: o.interval, once: !!o.once, iterations: o.iterations, processes: o.processes });
    });

  program
    .command('users')
    .description('per-user totals from the ledger (default: since the start of today)')
    .option('--since <duration>', 'from this long ago until now, e.g. 1h, 30m, 7d', durationArg)
    .option('--from <time>', 'start (ISO-8601)', timeArg)
    .option('--to <time>', 'end (ISO-8601; default now)', timeArg)
    .option('--json', 'exact figures as JSON')
    .action(async (o: { since?: number; from?: number; to?: number; json?: boolean }, cmd: Command) => {
      if (o.since !== undefined && o.from !== undefined) throw new InvalidArgumentError('use either --since or --from/--to, not both');
      const now = Date.now();
      const toMs = o.to ?? now;
      const fromMs = o.since !== undefined ? now - o.since : (o.from ?? localDayStart(now));
      if (toMs < fromMs) throw new InvalidArgumentError('--to is before the start of the range');
      await showUsers({ socket: socketOf(cmd), json: !!o.json, fromMs, toMs });
    });

  program
    .command('procs')
    .description('processes with network traffic (cumulative, and rates)')
    .option('-u, --user <name|uid>', 'only this user')
    .option('--json', 'exact figures as JSON')
    .action(async (o: { user?: string; json?: boolean }, cmd: Command) => {
      await showProcs({ socket: socketOf(cmd), json: !!o.json, user: o.user });
    });

  addFlowsCommand(program, socketOf);

  program
    .command('status')
    .description('agent, kernel hooks, ledger and exporter health')
    .option('--json', 'as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      await showStatus({ socket: socketOf(cmd), json: !!o.json });
    });

  program
    .command('detach')
    .description('remove the kernel programs and pinned counters (as root; the agent must be stopped)')
    .option('-c, --config <file>', 'config file whose agent.pin_dir to use (default /etc/ubia/ubia.toml)')
    .action(async (o: { config?: string }, cmd: Command) => {
      const { detach } = await import('./detach.js');
      process.exitCode = await detach({ config: o.config, socket: socketOf(cmd) });
    });

  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (e) {
    if (e instanceof AgentNotRunningError) {
      process.stderr.write(
        `ubia: ${e.message}.\nStart it with: systemctl start ubia   (or, as root: ubia agent --daemon)\n`,
      );
      process.exitCode = 2;
    } else if (e instanceof AgentReplyError) {
      process.stderr.write(`ubia: the agent refused the request (${e.code}): ${e.message}\n`);
      process.exitCode = 1;
    } else if (e instanceof InvalidArgumentError) {
      process.stderr.write(`ubia: ${e.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`ubia: ${(e as Error).message}\n`);
      process.exitCode = 1;
    }
  }
}

await main();
