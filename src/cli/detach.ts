// `ubia detach`: the kernel keeps counting while the agent is down (pinned programs and
// maps), and keeps quota blocks and throttles until their period ends; this is how an
// admin really stops metering and lifts every quota verdict (the whole pin directory goes,
// quota/ included). Refuses while an agent answers on
// the config's socket, or while any process still holds the pinned maps (an agent that
// does not answer), since that agent would go on reading maps that no longer count
// anything; --force detaches all the same.
import type { UbiaConfig } from '../config/config.js';
import { ConfigError, loadConfig } from '../config/load.js';
import { controlRequest } from '../control/client.js';
import type { StatusResult } from '../control/protocol.js';
import { detachMeter, pinHolders } from '../kernel/index.js';

export async function detach(opts: { config?: string; socket?: string; force: boolean }): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('ubia detach: must run as root (it removes pinned eBPF programs)\n');
    return 1;
  }
  let config: UbiaConfig;
  try {
    config = loadConfig(opts.config).config;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`ubia detach: ${e.message}\n`);
    return 1;
  }
  const pinDir = config.agent.pin_dir;
  // the agent of that config answers on its control.socket; --socket may name another
  for (const socket of new Set([config.control.socket, opts.socket ?? config.control.socket])) {
    const pid = await controlRequest<StatusResult>(socket, { op: 'status' }, 1000).then(
      (s) => s.agent.pid,
      () => undefined,
    );
    if (pid !== undefined) {
      process.stderr.write(`ubia detach: the agent (pid ${pid}) is running and answers on ${socket}; stop it first: systemctl stop ubia, or kill ${pid}\n`);
      return 1;
    }
  }
  const holders = pinHolders(pinDir);
  if (holders.length > 0 && !opts.force) {
    process.stderr.write(
      `ubia detach: the counters under ${pinDir} are in use by pid ${holders.join(', ')} (an agent that does not answer?); stop ${holders.length > 1 ? 'them' : 'it'} (kill ${holders.join(' ')}) or detach anyway with --force\n`,
    );
    return 1;
  }
  detachMeter(pinDir);
  process.stdout.write(`detached: the eBPF programs, counters and quota verdicts under ${pinDir} are gone\n`);
  return 0;
}
