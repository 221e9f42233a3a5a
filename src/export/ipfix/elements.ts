// The Information Elements ubia exports and the templates built from them.
// IANA IEs: https://www.iana.org/assignments/ipfix (RFC 7012 data types). Enterprise IEs
// carry the Private Enterprise Number from the config (RFC 7011 §3.2).
import type { TrafficCounters } from '../../kernel/types.js';
import type { IpfixElementIds } from './config.js';

/** Abstract data types (RFC 7012 §3.1) that ubia uses, plus the CACE length-prefixed string. */
export type IeType =
  | 'unsigned8' | 'unsigned16' | 'unsigned32' | 'unsigned64'
  | 'ipv4Address' | 'ipv6Address' | 'dateTimeMilliseconds' | 'string'
  /** Wireshark's CACE user/command IEs: a variable-length field whose content starts with
   *  its own 1-byte length (packet-netflow.c reads it that way); values must stay < 255 bytes. */
  | 'caceString';

export const VARIABLE_LENGTH = 65535; // RFC 7011 §7: field length 65535 = variable length

export interface FieldSpec {
  name: string;
  /** element ID without the enterprise bit */
  id: number;
  /** Private Enterprise Number, 0 for IANA elements */
  pen: number;
  type: IeType;
  /** encoded length, VARIABLE_LENGTH for strings */
  length: number;
}

const FIXED_LENGTH: Record<Exclude<IeType, 'string' | 'caceString'>, number> = {
  unsigned8: 1, unsigned16: 2, unsigned32: 4, unsigned64: 8,
  ipv4Address: 4, ipv6Address: 16, dateTimeMilliseconds: 8,
};

function field(name: string, id: number, type: IeType, pen = 0): FieldSpec {
  const length = type === 'string' || type === 'caceString' ? VARIABLE_LENGTH : FIXED_LENGTH[type];
  return { name, id, pen, type, length };
}

/** IANA IEs, by the names of the IANA registry. */
export const IANA = {
  octetDeltaCount: field('octetDeltaCount', 1, 'unsigned64'),
  packetDeltaCount: field('packetDeltaCount', 2, 'unsigned64'),
  protocolIdentifier: field('protocolIdentifier', 4, 'unsigned8'),
  sourceTransportPort: field('sourceTransportPort', 7, 'unsigned16'),
  sourceIPv4Address: field('sourceIPv4Address', 8, 'ipv4Address'),
  destinationTransportPort: field('destinationTransportPort', 11, 'unsigned16'),
  destinationIPv4Address: field('destinationIPv4Address', 12, 'ipv4Address'),
  sourceIPv6Address: field('sourceIPv6Address', 27, 'ipv6Address'),
  destinationIPv6Address: field('destinationIPv6Address', 28, 'ipv6Address'),
  flowDirection: field('flowDirection', 61, 'unsigned8'),
  flowEndReason: field('flowEndReason', 136, 'unsigned8'),
  flowStartMilliseconds: field('flowStartMilliseconds', 152, 'dateTimeMilliseconds'),
  flowEndMilliseconds: field('flowEndMilliseconds', 153, 'dateTimeMilliseconds'),
  userName: field('userName', 371, 'string'),
  transportOctetDeltaCount: field('transportOctetDeltaCount', 401, 'unsigned64'),
} as const;

/** flowEndReason values (IANA "flowEndReason" registry, RFC 5102 §5.11.3). */
export const END_REASON = { idleTimeout: 1, activeTimeout: 2, endOfFlow: 3, forcedEnd: 4 } as const;
/** flowDirection values (RFC 5102 §5.11.7): 0 ingress, 1 egress, as seen by this host. */
export const DIRECTION = { ingress: 0, egress: 1 } as const;

/** CACE Technologies' IEs that Wireshark names (packet-netflow.c, VENDOR_CACE). */
export const CACE_PEN = 32622;

/** One of ubia's enterprise IEs: name, type and the config key holding its element ID. */
export interface UbiaElement {
  key: keyof IpfixElementIds;
  name: string;
  type: IeType;
  description: string;
  /** per-user records: the counter of the interval this IE carries */
  counter?: keyof TrafficCounters;
}

/** The per-user counters, in and out of each kind: wire bytes, packets, payload bytes. */
const USER_COUNTER_KINDS = [
  { key: 'wire_octets', name: 'WireOctets', what: 'L3 bytes', verbs: ['received', 'sent'], counters: ['rxBytes', 'txBytes'] },
  { key: 'wire_packets', name: 'WirePackets', what: 'packets', verbs: ['received', 'sent'], counters: ['rxPackets', 'txPackets'] },
  { key: 'payload_octets', name: 'PayloadOctets', what: 'payload bytes the user\'s processes', verbs: ['read', 'wrote'], counters: ['rxPayloadBytes', 'txPayloadBytes'] },
] as const;

type UserCounterElement = UbiaElement & { counter: keyof TrafficCounters };

export const USER_COUNTER_ELEMENTS: readonly UserCounterElement[] = USER_COUNTER_KINDS.flatMap((k) =>
  (['in', 'out'] as const).map((dir, i): UserCounterElement => ({
    key: `${k.key}_${dir}`,
    name: `ubia${k.name}${dir === 'in' ? 'In' : 'Out'}`,
    type: 'unsigned64',
    description: `per-user record: ${k.what} ${k.verbs[i]} in the interval`,
    counter: k.counters[i],
  })));

/** ubia's enterprise IEs, in the order of their default element IDs (1, 2, …). */
export const UBIA_ELEMENTS: readonly UbiaElement[] = [
  { key: 'uid', name: 'ubiaUserId', type: 'unsigned32', description: 'numeric user ID (uid) owning the socket' },
  { key: 'gid', name: 'ubiaGroupId', type: 'unsigned32', description: 'primary group ID (gid) of the owning process' },
  { key: 'pid', name: 'ubiaProcessId', type: 'unsigned32', description: 'process ID (thread-group ID) that last used the socket; 0 when unknown' },
  { key: 'process_name', name: 'ubiaProcessName', type: 'string', description: 'process name (kernel comm, up to 15 bytes)' },
  { key: 'cgroup_id', name: 'ubiaCgroupId', type: 'unsigned64', description: 'cgroup v2 ID of the owning process (the inode number of its cgroup directory)' },
  ...USER_COUNTER_ELEMENTS,
  { key: 'cgroup_path', name: 'ubiaCgroupPath', type: 'string', description: 'cgroup v2 path of the owning process, e.g. /system.slice/nginx.service: its systemd unit; empty when unknown' },
  { key: 'unit_name', name: 'ubiaUnitName', type: 'string', description: 'what the cgroup path maps to by the agent\'s unit rules: a systemd unit (nginx.service), a batch job step (job_1234/step_0) or a container; empty when unknown' },
];

export type Profile = 'ubia' | 'cace';

export interface ElementOptions {
  pen: number;
  ids: IpfixElementIds;
  profile: Profile;
}

/** One ubia enterprise element as a field of a template. */
export function ubiaField(opts: ElementOptions, key: keyof IpfixElementIds): FieldSpec {
  const def = UBIA_ELEMENTS.find((e) => e.key === key)!;
  return field(def.name, opts.ids[key], def.type, opts.pen);
}

/** The fields that name the user and process, per profile. */
export function ownerFields(opts: ElementOptions, withProcessName: boolean): {
  uid: FieldSpec; pid: FieldSpec; userName: FieldSpec; processName: FieldSpec | null;
} {
  if (opts.profile === 'cace') {
    return {
      uid: field('caceLocalProcessUserId', 8, 'unsigned32', CACE_PEN),
      pid: field('caceLocalProcessId', 9, 'unsigned32', CACE_PEN),
      userName: field('caceLocalProcessUserName', 10, 'caceString', CACE_PEN),
      processName: withProcessName ? field('caceLocalProcessCommand', 11, 'caceString', CACE_PEN) : null,
    };
  }
  return {
    uid: ubiaField(opts, 'uid'),
    pid: ubiaField(opts, 'pid'),
    userName: IANA.userName,
    processName: withProcessName ? ubiaField(opts, 'process_name') : null,
  };
}
