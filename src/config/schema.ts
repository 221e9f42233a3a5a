// The agent's configuration (/etc/ubia/ubia.toml): one zod strict object per TOML table,
// so an unknown key is an error, never silently ignored. Every key has a default, so an
// empty file (or no file) is a valid configuration. Exporter sections belong to their
// exporters (src/export/<name>/config.ts); absent section = exporter disabled.
import { z } from 'zod';
import { integer, seconds, setting, text } from '../core/settings.js';
import { compileWorkloadRule, WORKLOAD_KINDS } from '../core/workload.js';
import { quotaRulesSchema } from './quota.js';

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
    unconnected_peers: setting(
      integer(1, 65_536),
      128,
      'how many flows (one per remote address and port) an unconnected socket gets (UDP sendto() without connect(): DNS, QUIC, NTP); datagrams of further peers count in the user totals but in no flow, shown as peer overflows in `ubia status`; restart to change',
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

export const historySectionSchema = z
  .strictObject({
    enabled: setting(z.boolean(), false, 'keep every flow record (ended flows and active-timeout reports) on disk for `ubia flows --since` (DuckDB: ≈ 37 MiB more resident memory, and a flow-table read every flow_interval)'),
    path: setting(z.string(), '', 'DuckDB flow store file; empty = flows/flows.duckdb beside the ledger. Its directory is made root-only (0700)'),
    max_age_days: setting(seconds(1 / 24, 36_500), 90, 'days flow records are kept'),
    max_size_mb: setting(seconds(16, 10_000_000), 4096, 'MiB the flow store may take; past it the oldest records go first'),
    active_timeout: setting(seconds(1, 86_400), 300, 'seconds after which a long-lived flow gets a record of its counts since the previous one'),
    idle_timeout: setting(seconds(1, 86_400), 60, "seconds without traffic after which a flow's pending counts get a record"),
    flush_interval: setting(seconds(1, 3600), 10, 'seconds between two writes of new flow records (an agent crash loses the records of at most this long)'),
  })
  .describe('The flow store: every flow record on disk, queried with `ubia flows --since/--where/--group-by`.');

export const controlSectionSchema = z
  .strictObject({
    socket: setting(
      text(),
      '/run/ubia/control.sock',
      'unix socket of the control API used by the `ubia` command (RuntimeDirectory /run/ubia), mode 0666; beside it SOCKET.admin, mode 0660 root:admin_group (0600 without one), which root and admins use so that no other user\'s connections queue before theirs',
    ),
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
    max_clients_per_user: setting(integer(1, 10_000), 16, "simultaneous control connections of one non-admin uid; more are refused with a `busy` error and closed"),
    admin_reserved_clients: setting(integer(0, 10_000), 16, 'of max_clients, the connections only root and admin_group members may take, so no user can lock them out (at max_clients or more only admins connect)'),
    request_timeout: setting(seconds(0.1, 300), 10, 'seconds a request line may take to arrive from its first byte, and a client may leave its replies unread past max_reply_buffer_bytes; then it is closed'),
    user_time_budget: setting(integer(1, 1000), 100, "milliseconds of the agent's time per second that the requests of one non-admin uid may take (over all its connections); past it they wait unread"),
    max_reply_buffer_bytes: setting(integer(65_536, 268_435_456), 1_048_576, "replies not read yet, at most: per connection of root and admins, over all the connections of any other uid; past this the agent stops reading a client that leaves replies unread until it reads them (back-pressure)"),
  })
  .describe('The control socket: the local API the `ubia` command talks to.');

export const logSectionSchema = z
  .strictObject({
    level: setting(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']), 'info', 'log level (one JSON line per event on stderr = the journal)'),
    daemon_file: setting(text(), '/var/log/ubia/agent.log', 'where `ubia agent --daemon` (not the systemd service) appends its log lines'),
  })
  .describe("The agent's log.");

const template = (what: string, example: string) =>
  z.string().max(256).optional().describe(`template of ${what}: \${group} stands for a named group of the match, $1… for a numbered one`).meta({ examples: [example] });

/** `[[units.rule]]`: one row of the table that names a cgroup path (data, not code). */
export const unitRuleSchema = z
  .strictObject({
    match: z
      .string()
      .min(1)
      .max(1024)
      .refine((m) => {
        try {
          compileWorkloadRule({ match: m, kind: 'other', name: '' });
          return true;
        } catch {
          return false;
        }
      }, 'not a valid JavaScript regular expression')
      .describe('JavaScript regular expression tried against the cgroup path (e.g. /system.slice/nginx.service)')
      .meta({ examples: [String.raw`/batch\.slice/(?<unit>runner-(?<n>\d+)\.service)(?:/|$)`] }),
    kind: z.enum(WORKLOAD_KINDS).describe('what the matched cgroup is: service, scope, slice, job, step, container or other').meta({ examples: ['service'] }),
    name: text().max(256).describe('template of the name shown for it (`${unit}`, `job_${job}`)').meta({ examples: ['${unit}'] }),
    job: template('the Slurm job id', '${job}'),
    step: template('the Slurm step', '${step}'),
    container: template('the container id', '${id}'),
  })
  .describe('one units rule: the first rule whose `match` matches a cgroup path names the workload (kind, name, job, step, container)');

export const unitsSectionSchema = z
  .strictObject({
    default_rules: setting(
      z.boolean(),
      true,
      'after the [[units.rule]] tables, try the built-in rules (Slurm cgroup/v2 jobs and steps; Docker, Podman, CRI and systemd-nspawn containers; systemd services, scopes and slices; docs/units.md lists them)',
    ),
    rule: z
      .array(unitRuleSchema)
      .max(1000)
      .optional()
      .describe('rules tried before the built-in ones, in order: [[units.rule]] tables with match, kind, name and optionally job, step, container; absent = none'),
  })
  .describe("Units: how the cgroup of a socket's owner is named as a systemd unit, Slurm job or step, or container (`ubia units`).");

/** Sections owned by the agent itself; the full schema adds the exporters (config/load.ts). */
export const coreConfigShape = {
  agent: agentSectionSchema.prefault({}),
  ledger: ledgerSectionSchema.prefault({}),
  history: historySectionSchema.prefault({}),
  units: unitsSectionSchema.prefault({}),
  control: controlSectionSchema.prefault({}),
  log: logSectionSchema.prefault({}),
  quota: quotaRulesSchema,
};
