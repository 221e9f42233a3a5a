// The agent's configuration (/etc/ubia/ubia.toml): one zod strict object per TOML table,
// so an unknown key is an error, never silently ignored. Every key has a default, so an
// empty file (or no file) is a valid configuration. Exporter sections belong to their
// exporters (src/export/<name>/config.ts); absent section = exporter disabled.
import { z } from 'zod';

const seconds = (min: number, max: number) => z.number().min(min).max(max);
const integer = (min: number, max: number) => z.number().int().min(min).max(max);
const text = () => z.string().min(1);

/** A key with its default; the description (what config errors say is allowed) ends
 *  with that default, so the two cannot disagree. */
function setting<T extends z.ZodType>(schema: T, fallback: z.output<T>, meaning: string) {
  return schema.default(fallback as never).describe(`${meaning}; default ${fallback === '' ? '""' : String(fallback)}`);
}

export const agentSectionSchema = z
  .strictObject({
    poll_interval: setting(seconds(0.1, 60), 1, 'seconds between two reads of the kernel counters (the live view rate)'),
    flow_interval: setting(seconds(0.1, 300), 5, "seconds between two folds of the sockets' counts into the totals (users' figures move at this pace unless `ubia top` watches), and between two reads of the active flow table while an exporter takes flows"),
    count_loopback: setting(z.boolean(), false, 'count traffic over the loopback interface in user totals and exports'),
    pin_dir: setting(text(), '/sys/fs/bpf/ubia', 'bpffs directory where the meter pins its maps and links'),
    flow_capacity: setting(integer(1024, 4_194_304), 65_536, 'how many active flows the kernel flow table holds'),
    meter_mode: setting(
      z.enum(['default', 'precise']),
      'default',
      '"default": TCP payload read from each socket\'s own counters at the fold, no program per send/recv call, a shared socket\'s bytes to the process holding it; "precise": every send/recv call\'s payload for the process making it (Linux 6.3+, costs ~3 % of 64-byte TCP throughput; on older kernels the default mode runs and `ubia status` says why)',
    ),
    name_cache_ttl: setting(seconds(1, 86_400), 300, 'seconds a uid → user name look-up (NSS) stays cached'),
    recent_flows: setting(integer(0, 100_000), 1000, 'how many ended flows `ubia flows` remembers'),
  })
  .describe('[agent] metering loop');

export const ledgerSectionSchema = z
  .strictObject({
    path: setting(text(), '/var/lib/ubia/ledger.db', 'SQLite ledger file (WAL mode)'),
    flush_interval: setting(
      seconds(1, 3600),
      10,
      'seconds between two ledger transactions (an agent crash loses nothing: the kernel keeps counting and the next start books the difference; a host crash or reboot loses at most this much)',
    ),
    minute_retention_days: setting(seconds(1 / 24, 3650), 2, 'days per-minute buckets are kept before being rolled up into hours'),
    hour_retention_days: setting(seconds(1, 36_500), 90, 'days per-hour buckets are kept before being rolled up into days'),
    day_retention_days: setting(seconds(1, 36_500), 3650, 'days per-day buckets are kept before being deleted'),
  })
  .describe('[ledger] durable usage store');

export const controlSectionSchema = z
  .strictObject({
    socket: setting(text(), '/run/ubia/control.sock', 'unix socket of the control API used by the CLI'),
    admin_group: setting(z.string(), '', 'members of this group see every user like root does; empty = root only'),
    max_request_bytes: setting(integer(256, 1_048_576), 65_536, 'longest accepted request line; longer ones get an error reply'),
    max_clients: setting(integer(1, 10_000), 256, 'simultaneous control connections; more are refused with an error'),
  })
  .describe('[control] local API');

export const logSectionSchema = z
  .strictObject({
    level: setting(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']), 'info', 'log level (one JSON line per event on stderr)'),
    daemon_file: setting(text(), '/var/log/ubia/agent.log', 'where `ubia agent --daemon` appends the log lines'),
  })
  .describe('[log]');

/** Sections owned by the agent itself; the full schema adds the exporters (config/load.ts). */
export const coreConfigShape = {
  agent: agentSectionSchema.prefault({}),
  ledger: ledgerSectionSchema.prefault({}),
  control: controlSectionSchema.prefault({}),
  log: logSectionSchema.prefault({}),
};
