// The [ipfix] section of /etc/ubia/ubia.toml. Absent section = IPFIX export disabled.
// Every key is documented with .describe(); docs/ipfix.md lists the same with examples.
import { z } from 'zod';
import { seconds, setting } from '../../core/settings.js';

/** Whole seconds, 1..max, with their default and meaning. */
const wholeSeconds = (max: number, def: number, meaning: string) => setting(seconds(1, max).int(), def, meaning);
const elementId = (id: number) =>
  z.number().int().min(1).max(32767).default(id)
    .describe(`enterprise Information Element ID (1..32767; the enterprise bit is set on the wire, RFC 7011 §3.2); default ${id}`);

const PORT_RANGE = 'the collector port must be 1..65535 (IPFIX collectors usually listen on 4739)';
const PEN_RANGE = 'enterprise_number must be a Private Enterprise Number, 1..4294967295: your organisation\'s number from IANA, or leave it out for 32473 (documentation use)';

/** Enterprise element IDs under `enterprise_number` for the fields IANA has no IE for. */
export const ipfixElementIdsSchema = z.strictObject({
  uid: elementId(1),
  gid: elementId(2),
  pid: elementId(3),
  process_name: elementId(4),
  cgroup_id: elementId(5),
  wire_octets_in: elementId(6),
  wire_octets_out: elementId(7),
  wire_packets_in: elementId(8),
  wire_packets_out: elementId(9),
  payload_octets_in: elementId(10),
  payload_octets_out: elementId(11),
  cgroup_path: elementId(12),
  unit_name: elementId(13),
}).refine((ids) => new Set(Object.values(ids)).size === Object.keys(ids).length, {
  message: 'each enterprise element ID must be different: give every key under [ipfix.element_ids] its own number',
});

export const ipfixCollectorSchema = z.strictObject({
  address: z.string({ error: 'each [[ipfix.collectors]] table needs address = "<host or IP of the IPFIX collector>"' })
    .min(1, 'collector address is empty: set address = "<host or IP of the IPFIX collector>"')
    .describe('host name or IP address of the collector')
    .meta({ examples: ['192.0.2.10'] }),
  port: z.number().int().min(1, PORT_RANGE).max(65535, PORT_RANGE).default(4739)
    .describe('collector port, 1..65535; default 4739 (IANA ipfix)'),
  transport: z.enum(['udp', 'tcp']).default('udp')
    .describe('udp: templates re-sent every template_refresh seconds, records lost if the collector is down; tcp: templates once per connection, reconnect with backoff, records spooled on disk while the collector is unreachable'),
  records: z.array(z.enum(['flows', 'users'])).min(1).default(['flows', 'users'])
    .describe('which records this collector gets: "flows" (per-flow, per-direction) and/or "users" (one per user per usage_interval)'),
  // 512: every template ubia sends fits one message (about 300 bytes) with room for records;
  // any IPv4 path carries 576-byte datagrams (RFC 791), so a smaller limit is never needed
  udp_message_bytes: z.number().int().min(512, 'udp_message_bytes must be at least 512 (the templates need about 300)').max(65507).default(1400)
    .describe('largest IPFIX message sent over UDP, in bytes; keep it under the path MTU minus 28 (IPv4) or 48 (IPv6) header bytes; default 1400. TCP messages go up to 65535 bytes'),
  template_refresh: wholeSeconds(86400, 600, 'UDP only: seconds between template re-sends (RFC 7011 §8.4)'),
  reconnect_min: wholeSeconds(3600, 1, 'TCP only: first reconnect delay in seconds, doubled after each failure'),
  reconnect_max: wholeSeconds(3600, 60, 'TCP only: largest reconnect delay in seconds'),
  spool_max_bytes: z.number().int().min(65536).max(2 ** 40).default(256 * 1024 * 1024)
    .describe('TCP only: size limit of the on-disk spool kept while the collector is unreachable; when full the oldest records are dropped and counted; default 256 MiB'),
  anonymize: z.enum(['none', 'truncate', 'cryptopan']).default('none')
    .describe('what to do with remote addresses: none; truncate (keep only a prefix, see truncate_ipv4_prefix/truncate_ipv6_prefix); cryptopan (prefix-preserving anonymisation with the key in cryptopan_key_file)'),
  truncate_ipv4_prefix: z.number().int().min(0).max(32).default(24)
    .describe('anonymize = "truncate": IPv4 prefix length kept; default 24'),
  truncate_ipv6_prefix: z.number().int().min(0).max(128).default(48)
    .describe('anonymize = "truncate": IPv6 prefix length kept; default 48'),
  cryptopan_key_file: z.string().min(1).optional()
    .describe('anonymize = "cryptopan": file holding the 32-byte key (raw, or 64 hex digits); create one with `head -c 32 /dev/urandom > /etc/ubia/cryptopan.key`')
    .meta({ examples: ['/etc/ubia/cryptopan.key'] }),
  process_names: z.boolean().default(true)
    .describe('false leaves what ran out of the records sent to this collector: the process name (comm), the cgroup path and the unit name (systemd unit, job, container)'),
}).refine((c) => c.anonymize !== 'cryptopan' || c.cryptopan_key_file !== undefined, {
  message: 'anonymize = "cryptopan" needs cryptopan_key_file = "<path to a 32-byte key>"',
  path: ['cryptopan_key_file'],
}).refine((c) => c.reconnect_min <= c.reconnect_max, {
  message: 'reconnect_min must not be larger than reconnect_max',
  path: ['reconnect_min'],
});

export const ipfixConfigSchema = z.strictObject({
  collectors: z.array(ipfixCollectorSchema)
    .min(1, 'no IPFIX collector configured: add at least one [[ipfix.collectors]] table with an address')
    .refine((cs) => new Set(cs.map((c) => `${c.transport} ${c.address} ${c.port}`)).size === cs.length, {
      message: 'the same collector (transport, address and port) is listed twice: each [[ipfix.collectors]] table needs its own',
    })
    .describe('one [[ipfix.collectors]] table per collector; each gets its own stream, templates, sequence numbers and spool'),
  observation_domain_id: z.number().int().min(0).max(2 ** 32 - 1).default(1)
    .describe('Observation Domain ID in every message header (RFC 7011 §3.1); default 1'),
  enterprise_number: z.number().int().min(1, PEN_RANGE).max(2 ** 32 - 1, PEN_RANGE).default(32473)
    .describe('Private Enterprise Number (1..4294967295) of ubia\'s own IEs (uid, gid, pid, process name, cgroup id, per-user counters); default 32473, the number RFC 5612 reserves for documentation: set your organisation\'s PEN in production'),
  element_ids: ipfixElementIdsSchema.prefault({})
    .describe('element IDs under enterprise_number; defaults 1..13 in the order listed in docs/ipfix.md'),
  profile: z.enum(['ubia', 'cace']).default('ubia')
    .describe('ubia: uid, pid, process name as ubia enterprise IEs and userName as IANA 371; cace: uid, pid, user name and process name as the CACE Technologies IEs (PEN 32622, IDs 8-11) that Wireshark names'),
  active_timeout: wholeSeconds(86400, 60, 'seconds after which a long-lived flow is reported with the bytes since its last report (flowEndReason activeTimeout)'),
  idle_timeout: wholeSeconds(86400, 300, 'seconds without traffic after which a flow\'s pending bytes are reported (flowEndReason idleTimeout), and after which a flow the meter no longer lists is forgotten'),
  usage_interval: wholeSeconds(86400, 60, 'seconds covered by each per-user usage record'),
}).optional().describe('IPFIX export (RFC 7011); absent = disabled');

export type IpfixConfig = NonNullable<z.output<typeof ipfixConfigSchema>>;
export type IpfixCollectorConfig = z.output<typeof ipfixCollectorSchema>;
export type IpfixElementIds = z.output<typeof ipfixElementIdsSchema>;
