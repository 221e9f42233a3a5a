// The `ubia` command line's definition: commands, options, their help. The same source
// gives --help, the man page ubia(8) and the shell completions (cli/docs.ts).
import { createRequire } from 'node:module';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.js';
import { MAX_QUERY_ROWS } from '../control/protocol.js';
import { runTop } from './top.js';
import { FLOWS_EXAMPLES, isQuery, QUERY_DEFAULT_LIMIT, runFlowQuery, type FlowQueryOptions } from './flows.js';
import { REPORT_BY, REPORT_EXAMPLES, runReport, type ReportOptions } from './report.js';
import { rangeOf, timeOptions, type TimeOptions } from './when.js';
import { changeQuota, showFlows, showProcs, showQuota, showStatus, showUnits, showUsers, type OutputFormat } from './views.js';
import type { WorkloadGrouping } from '../core/workload.js';
import { parseBytes } from '../core/units.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

function positiveNumber(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

/** A whole number within [min, max], checked here rather than by the agent's protocol. */
const wholeNumber = (min: number, max: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
  if (n < min) throw new InvalidArgumentError(`at least ${min}`);
  if (n > max) throw new InvalidArgumentError(`at most ${max}`);
  return n;
};

/** commander's "error: option '--processes <n>' argument '500' is invalid. at most 100"
 *  as "ubia: --processes: at most 100 (got 500)"; its other errors keep their words. */
export function plainError(text: string): string {
  const m = /^error: option '(-\S+, )?(--[\w-]+)[^']*' argument '([^']*)' is invalid\. (.*)$/m.exec(text);
  if (m) return `ubia: ${m[2]}: ${m[4]} (got ${m[3]})\n`;
  return text.replace(/^error: /, 'ubia: ');
}

function bytesArg(v: string): number {
  const n = parseBytes(v);
  if (n === undefined || n <= 0) throw new InvalidArgumentError('expected a byte count with its unit, e.g. 5GiB, 500MB or 10MiB');
  return n;
}

interface FormatFlags {
  json?: boolean;
  csv?: boolean;
}

const jsonOption = () => new Option('--json', 'exact figures as JSON').conflicts('csv');
const csvOption = () => new Option('--csv', 'exact figures as CSV (RFC 4180, a header line first)');
const formatOf = (o: FormatFlags): OutputFormat => (o.json ? 'json' : o.csv ? 'csv' : 'table');

interface GlobalOptions {
  socket?: string;
  config?: string;
}

/** --socket (or UBIA_SOCKET) when given, else control.socket of the config file (--config,
 *  default /etc/ubia/ubia.toml; the built-in default when there is none). */
function socketOf(cmd: Command): string {
  const o = cmd.optsWithGlobals() as GlobalOptions;
  if (o.socket !== undefined) return o.socket;
  try {
    return loadConfig(o.config).config.control.socket;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    throw new InvalidArgumentError(`${e.message}\n(the agent's socket is control.socket of that file; or name it with --socket)`);
  }
}

export function buildProgram(): Command {
  const program = new Command('ubia')
    .description('User-Based IP Accounting: who sends and receives what on this host')
    .version(version)
    .option('-c, --config <file>', `config file: the agent's settings, and where the other commands find its socket (default ${DEFAULT_CONFIG_PATH}; built-in defaults when absent)`)
    .addOption(new Option('--socket <path>', "control socket of the agent (default: the config's control.socket)").env('UBIA_SOCKET'))
    .configureOutput({ outputError: (text, write) => write(plainError(text)) })
    .showHelpAfterError('(add --help for the options)');

  program
    .command('agent')
    .description('run the metering agent (as root)')
    .option('--daemon', 'detach; logs go to log.daemon_file (/var/log/ubia/agent.log)')
    .action(async (o: { daemon?: boolean }, cmd: Command) => {
      const { runAgentCommand } = await import('./agent.js');
      // exit right away: the kernel meter's event polling would keep the loop alive
      process.exit(await runAgentCommand({ config: (cmd.optsWithGlobals() as GlobalOptions).config, daemon: o.daemon }));
    });

  program
    .command('top')
    .description("live per-user rates and today's totals; keys: h or ? (help), r d i o n (sort), / (filter), Enter/Esc (drill down/back), w (wire/payload), b (bytes/bits), p (processes), u (units: services, jobs, containers), q (quit)")
    .option('-i, --interval <seconds>', 'refresh interval', positiveNumber, 1)
    .option('--once', 'print one frame and exit')
    .option('-n, --iterations <n>', 'frames to print when not on a terminal (0 = until interrupted)', wholeNumber(0, 1_000_000_000), 0)
    .option('--processes <n>', 'processes shown under each user (0-100)', wholeNumber(0, 100), 5)
    .addOption(new Option('--json', 'one JSON document per interval (NDJSON), exact figures, for scripts').conflicts('csv'))
    .addOption(new Option('--csv', "each interval's users as CSV lines (exact figures; the header once)"))
    .action(async (o: { interval: number; once?: boolean; iterations: number; processes: number } & FormatFlags, cmd: Command) => {
      await runTop({ socket: socketOf(cmd), intervalSeconds: o.interval, once: !!o.once, iterations: o.iterations, processes: o.processes, format: formatOf(o) });
    });

  const users = program
    .command('users')
    .description('per-user totals from the ledger (default: since the start of today)')
    .addOption(jsonOption())
    .addOption(csvOption());
  timeOptions(users, 'totals').action(async (o: TimeOptions & FormatFlags, cmd: Command) => {
    const rule = { utc: !!o.utc };
    await showUsers({ socket: socketOf(cmd), format: formatOf(o), rule, ...rangeOf(o, rule, Date.now(), 'today') });
  });

  const units = program
    .command('units')
    .description("per-user totals per systemd unit, Slurm job or container, from the ledger (default: since the start of today), with the live rates; a user's rows sum to their `ubia users` row")
    .addOption(new Option('--by <grouping>', 'one row per unit (workload), per Slurm job (its steps together) or per container').choices(['unit', 'job', 'container']).default('unit'))
    .option('-u, --user <name|uid>', 'only this user')
    .addOption(jsonOption())
    .addOption(csvOption());
  timeOptions(units, 'totals').action(async (o: TimeOptions & { by: WorkloadGrouping; user?: string } & FormatFlags, cmd: Command) => {
    const rule = { utc: !!o.utc };
    await showUnits({ socket: socketOf(cmd), format: formatOf(o), rule, ...rangeOf(o, rule, Date.now(), 'today'), by: o.by, user: o.user });
  });

  const report = program
    .command('report')
    .description("per-user totals (as `users` gives them) broken down by hour, day, month, process, remote network or port; rows add up to each total exactly")
    .addOption(new Option('--by <breakdown>', 'user (totals only), hour, day, month, process, remote, port or unit').choices(REPORT_BY).default('user'))
    .option('-u, --user <name|uid>', 'only this user')
    .option('--top <n>', 'keep the n busiest rows per user (process, remote, port), the rest summed as "(other)"', wholeNumber(1, MAX_QUERY_ROWS))
    .addOption(jsonOption())
    .addOption(csvOption());
  timeOptions(report, 'usage')
    .addHelpText('after', REPORT_EXAMPLES)
    .action(async (o: ReportOptions & FormatFlags, cmd: Command) => {
      await runReport({ socket: socketOf(cmd), format: formatOf(o), ...o });
    });

  program
    .command('procs')
    .description('processes with network traffic (cumulative, and rates)')
    .option('-u, --user <name|uid>', 'only this user')
    .addOption(jsonOption())
    .addOption(csvOption())
    .action(async (o: { user?: string } & FormatFlags, cmd: Command) => {
      await showProcs({ socket: socketOf(cmd), format: formatOf(o), user: o.user });
    });

  const flows = program
    .command('flows')
    .description('active flows and recently ended ones (newest first, with their end time), or with a range or a query: the flow history')
    .option('-u, --user <name|uid>', 'only this user')
    .option('-n, --limit <n>', `live table: only the n flows with the most bytes, of each list (active, ended); query: at most n rows (default ${QUERY_DEFAULT_LIMIT}, at most ${MAX_QUERY_ROWS})`, wholeNumber(1, 1_000_000))
    .addOption(jsonOption())
    .addOption(csvOption());
  timeOptions(flows, 'query the flow history')
    .option('--where <filter>', 'keep records matching this filter')
    .option('--group-by <keys>', 'group records by these comma-separated keys')
    .option('--having <condition>', 'keep groups whose aggregates match, e.g. "bytes > 10M and flows >= 3"')
    .option('--order <fields>', 'order by these aggregates or keys; "-" first = descending (default -bytes, or -end for records)')
    .option('--remotes', 'count distinct remote addresses per group (slower; implied when --having/--order name "remotes")')
    .addHelpText('after', FLOWS_EXAMPLES)
    .action(async (o: FlowQueryOptions & FormatFlags, cmd: Command) => {
      const socket = socketOf(cmd);
      if (isQuery(o)) return runFlowQuery({ socket, format: formatOf(o), ...o });
      await showFlows({ socket, format: formatOf(o), user: o.user, limit: o.limit });
    });

  program
    .command('status')
    .description('agent, kernel hooks, ledger and exporter health')
    .addOption(jsonOption())
    .action(async (o: FormatFlags, cmd: Command) => {
      await showStatus({ socket: socketOf(cmd), format: formatOf(o) });
    });

  const quota = program
    .command('quota')
    .description('used vs limit of the [[quota]] rules this period, the period\'s end and the state (ok, warned, blocked, throttled): your own, or everyone\'s for admins')
    .option('-u, --user <name|uid>', 'only this user')
    .addOption(jsonOption())
    .addOption(csvOption())
    .action(async (o: { user?: string } & FormatFlags, cmd: Command) => {
      await showQuota({ socket: socketOf(cmd), format: formatOf(o), user: o.user });
    });
  quota
    .command('grant')
    .description("add to a user's allowance for the current period (admins; logged)")
    .argument('<user>', 'user name or uid')
    .argument('<amount>', 'bytes with a unit: 5GiB, 500MB', bytesArg)
    .addOption(jsonOption())
    // --json after the subcommand may land on `quota` itself: read it from either
    .action(async (user: string, bytes: number, _o: FormatFlags, cmd: Command) => {
      await changeQuota({ socket: socketOf(cmd), format: formatOf(cmd.optsWithGlobals()), user, grantBytes: bytes });
    });
  quota
    .command('reset')
    .description("start a user's current period over: usage from zero, alerts again, grants dropped, a block or throttle lifted (admins; logged)")
    .argument('<user>', 'user name or uid')
    .addOption(jsonOption())
    .action(async (user: string, _o: FormatFlags, cmd: Command) => {
      await changeQuota({ socket: socketOf(cmd), format: formatOf(cmd.optsWithGlobals()), user });
    });

  program
    .command('detach')
    .description('remove the kernel programs, pinned counters and quota verdicts (as root; the agent must be stopped)')
    .option('--force', 'detach even while a process (an agent that does not answer) holds the pinned maps')
    .action(async (o: { force?: boolean }, cmd: Command) => {
      const { detach } = await import('./detach.js');
      const g = cmd.optsWithGlobals() as GlobalOptions;
      process.exitCode = await detach({ config: g.config, socket: g.socket, force: !!o.force });
    });

  return program;
}
