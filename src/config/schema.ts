// The agent's configuration (/etc/ubia/ubia.toml): one zod strict object per TOML table,
// so an unknown key is an error, never silently ignored. Every key has a default, so an
// empty file (or no file) is a valid configuration. Exporter sections belong to their
// exporters (src/export/<name>/config.ts); absent section = exporter disabled.
import { z } from 'zod';

const seconds = (min: number, max: number) => z.number().min(min).max(max);
const integer = (min: number, max: number) => z.number().int().min(min).max(max);

export const agentSectionSchema = z
  .strictObject({
    poll_interval: seconds(0.1, 60)
      .default(1)
      .describe('seconds between two reads of the kernel counters (the live view rate); default 1'),
    flow_interval: seconds(0.1, 300)
      .default(5)
      .describe('seconds between two reads of the active flow table (for exporters and `ubia flows`); default 5'),
    count_loopback: z
      .boolean()
      .default(false)
      .describe('count traffic over the loopback interface in user totals and exports; default false'),
    pin_dir: z
      .string()
      .min(1)
      .default('/sys/fs/bpf/ubia')
      .describe('bpffs directory where the meter pins its maps and links; default /sys/fs/bpf/ubia'),
    flow_capacity: integer(1024, 4_194_304)
      .default(65_536)
      .describe('how many active flows the kernel flow table holds; default 65536'),
    name_cache_ttl: seconds(1, 86_400)
      .default(300)
      .describe('seconds a uid → user name look-up (NSS) stays cached; default 300'),
    recent_flows: integer(0, 100_000)
      .default(1000)
      .describe('how many ended flows `ubia flows` remembers; default 1000'),
  })
  .describe('[agent] metering loop');

export const ledgerSectionSchema = z
  .strictObject({
    path: z
      .string()
      .min(1)
      .default('/var/lib/ubia/ledger.db')
      .describe('SQLite ledger file (WAL mode); default /var/lib/ubia/ledger.db'),
    flush_interval: seconds(1, 3600)
      .default(10)
      .describe('seconds between two ledger transactions; default 10. An agent crash loses nothing (the kernel keeps counting and the next start books the difference); a host crash or reboot loses at most this much'),
    minute_retention_days: seconds(1 / 24, 3650)
      .default(2)
      .describe('days per-minute buckets are kept before being rolled up into hours; default 2'),
    hour_retention_days: seconds(1, 36_500)
      .default(90)
      .describe('days per-hour buckets are kept before being rolled up into days; default 90'),
    day_retention_days: seconds(1, 36_500)
      .default(3650)
      .describe('days per-day buckets are kept before being deleted; default 3650'),
  })
  .describe('[ledger] durable usage store');

export const controlSectionSchema = z
  .strictObject({
    socket: z
      .string()
      .min(1)
      .default('/run/ubia/control.sock')
      .describe('unix socket of the control API used by the CLI; default /run/ubia/control.sock'),
    admin_group: z
      .string()
      .default('')
      .describe('members of this group see every user like root does; empty = root only (default)'),
    max_request_bytes: integer(256, 1_048_576)
      .default(65_536)
      .describe('longest accepted request line; longer ones get an error reply; default 65536'),
    max_clients: integer(1, 10_000)
      .default(256)
      .describe('simultaneous control connections; more are refused with an error; default 256'),
  })
  .describe('[control] local API');

export const logSectionSchema = z
  .strictObject({
    level: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace'])
      .default('info')
      .describe('log level (one JSON line per event on stderr); default info'),
    daemon_file: z
      .string()
      .min(1)
      .default('/var/log/ubia/agent.log')
      .describe('where `ubia agent --daemon` appends the log lines; default /var/log/ubia/agent.log'),
  })
  .describe('[log]');

/** Sections owned by the agent itself; the full schema adds the exporters (config/load.ts). */
export const coreConfigShape = {
  agent: agentSectionSchema.prefault({}),
  ledger: ledgerSectionSchema.prefault({}),
  control: controlSectionSchema.prefault({}),
  log: logSectionSchema.prefault({}),
};
