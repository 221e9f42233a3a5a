// The agent's configuration (/etc/ubia/ubia.toml): one zod strict object per TOML table,
// so an unknown key is an error, never silently ignored. Every key has a default, so an
// empty file (or no file) is a valid configuration. Exporter sections belong to their
// exporters (src/export/<name>/config.ts); absent section = exporter disabled.
import { z } from 'zod';
import { integer, seconds, setting, text } from '../core/settings.js';

export const agentSectionSchema = z
  .strictObject({
    poll_interval: setting(seconds(0.1, 60), 1, 'seconds between two reads of the kernel counters (the live view rate)'),
    flow_interval: setting(seconds(0.1, 300), 5, "seconds between two folds of the sockets' counts into the totals (users' figures move at this pace unless `ubia top` watches), and between two reads of the active flow table while an exporter takes flows"),
    count_loopback: setting(z.boolean(), false, 'count traffic over the loopback interface in user totals and exports'),
    pin_dir: setting(text(), '/sys/fs/bpf/ubia', 'bpffs directory where the meter pins its maps and links (they outlive agent restarts; `dpkg --purge ubia` removes them)'),
    flow_capacity: setting(integer(1024, 4_194_304), 65_536, 'how many active flows the kernel flow table holds (restart to change)'),
    user_capacity: setting(
      integer(2, 1_048_576),
      65_536,
      'how many (user, loopback/external) pairs the kernel user table holds (64 bytes each); users beyond it are counted as unattributed and shown in `ubia status`; restart to change (takes effect when the meter is first loaded)',
    ),
    meter_mode: setting(
      z.enum(['default', 'precise']),
      'default',
      '"default": TCP payload read from each socket\'s own counters at the fold, no program per send/recv call, a shared socket\'s bytes to the process holding it; "precise": every send/recv call\'s payload for the process making it (Linux 6.3+, costs ~3 % of 64-byte TCP throughput; on older kernels the default mode runs and `ubia status` says why)',
    ),
    name_cache_ttl: setting(seconds(1, 86_400), 300, 'seconds a uid → user name look-up (NSS: files, LDAP, SSSD) stays cached'),
    recent_flows: setting(integer(0, 100_000), 1000, 'how many ended flows `ubia flows` remembers'),
  })
  .describe('The metering loop: how often the kernel counters are read and folded, and what is counted.');

export const ledgerSectionSchema = z
  .strictObject({
    path: setting(text(), '/var/lib/ubia/ledger.db', "SQLite ledger file (WAL mode); the service's StateDirectory is /var/lib/ubia"),
    flush_interval: setting(
      seconds(1, 3600),
      10,
      'seconds between two ledger transactions (an agent crash loses nothing: the kernel keeps counting and the next start books the difference; a host crash or reboot loses at most this much)',
    ),
    minute_retention_days: setting(seconds(1 / 24, 3650), 2, 'days per-minute buckets are kept before being rolled up into hours'),
    hour_retention_days: setting(seconds(1, 36_500), 90, 'days per-hour buckets are kept before being rolled up into days'),
    day_retention_days: setting(seconds(1, 36_500), 3650, 'days per-day buckets are kept before being deleted'),
  })
  .describe('The ledger: the durable per-user usage store, in minute, hour and day buckets.');

const groupName = () => z.string().min(1).max(64);

/** `[[control.roles]]`: access between root/admin_group (everything) and self (own usage). */
export const roleSchema = z
  .discriminatedUnion('role', [
    z
      .strictObject({
        role: z.literal('manager').describe('the kind of role'),
        group: groupName().describe('unix group whose members get the role').meta({ examples: ['physics-leads'] }),
        sees_group: groupName()
          .describe("unix group whose members' usage, processes and flows they see (members: primary group or listed in /etc/group)")
          .meta({ examples: ['physics'] }),
      })
      .describe('group manager: members of `group` see every member of `sees_group`, by name, and nobody else'),
    z
      .strictObject({
        role: z.literal('auditor').describe('the kind of role'),
        group: groupName().describe('unix group whose members get the role').meta({ examples: ['helpdesk'] }),
      })
      .describe("auditor: members of `group` see every user's figures under keyed pseudonyms, remote addresses Crypto-PAn-anonymised"),
  ])
  .describe('one access role: role = "manager" (group, sees_group) or "auditor" (group)');

export type RoleConfig = z.infer<typeof roleSchema>;

export const controlSectionSchema = z
  .strictObject({
    socket: setting(text(), '/run/ubia/control.sock', 'unix socket of the control API used by the `ubia` command (RuntimeDirectory /run/ubia)'),
    admin_group: setting(z.string(), '', 'members of this group see every user like root does; empty = root only'),
    roles: z
      .array(roleSchema)
      .max(1000)
      .optional()
      .describe('access roles beyond admin_group: [[control.roles]] tables with role = "manager" (group, sees_group) or "auditor" (group); a caller matched by several gets admin, else every manager role at once, else auditor; absent = none'),
    auditor_key_file: setting(
      z.string(),
      '',
      "32-byte secret (raw or 64 hex digits, readable by root only) behind the auditor role's pseudonyms and Crypto-PAn addresses; empty = auditor.key next to ledger.path, generated (mode 0600) on first use",
    ),
    max_request_bytes: setting(integer(256, 1_048_576), 65_536, 'longest accepted request line; longer ones get an error reply'),
    max_clients: setting(integer(1, 10_000), 256, 'simultaneous control connections; more are refused with an error'),
  })
  .describe('The control socket: the local API the `ubia` command talks to.');

export const logSectionSchema = z
  .strictObject({
    level: setting(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']), 'info', 'log level (one JSON line per event on stderr = the journal)'),
    daemon_file: setting(text(), '/var/log/ubia/agent.log', 'where `ubia agent --daemon` (not the systemd service) appends its log lines'),
  })
  .describe("The agent's log.");

/** Sections owned by the agent itself; the full schema adds the exporters (config/load.ts). */
export const coreConfigShape = {
  agent: agentSectionSchema.prefault({}),
  ledger: ledgerSectionSchema.prefault({}),
  control: controlSectionSchema.prefault({}),
  log: logSectionSchema.prefault({}),
};
