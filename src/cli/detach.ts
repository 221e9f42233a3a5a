// `ubia detach`: the kernel keeps counting while the agent is down (pinned programs and
// maps); this is how an admin really stops metering. Refuses while an agent is running,
// since that agent would go on reading maps that no longer count anything.
import type { UbiaConfig } from '../config/config.js';
import { ConfigError, loadConfig } from '../config/load.js';
import { agentAnswers } from '../control/client.js';
import { detachMeter } from '../kernel/index.js';

export async function detach(opts: { config?: string; socket: string }): Promise<number> {
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
  // the agent of that config answers on its control.socket; --socket may name another
  for (const socket of new Set([config.control.socket, opts.socket])) {
    if (await agentAnswers(socket)) {
      process.stderr.write(
        `ubia detach: the agent is running (it answers on ${socket}); stop it first: systemctl stop ubia (or pkill ubia-agent)\n`,
      );
      return 1;
    }
  }
  detachMeter(config.agent.pin_dir);
  process.stdout.write(`detached: the eBPF programs and counters under ${config.agent.pin_dir} are gone\n`);
  return 0;
}
