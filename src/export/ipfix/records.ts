// The templates one collector gets and the encoding of ubia's records against them,
// with that collector's privacy settings applied.
import type { IpfixCollectorConfig } from './config.js';
import { parseAddress, truncateAddress } from '../../privacy/address.js';
import type { CgroupPathOf } from '../../kernel/cgroups.js';
import { createCryptoPan, readCryptoPanKey } from '../../privacy/cryptopan.js';
import { DIRECTION, IANA, ownerFields, ubiaField, USER_COUNTER_ELEMENTS, type ElementOptions } from './elements.js';
import { encodeRecord, encodeTemplateSet, maxRecordBytes, FIRST_TEMPLATE_ID, type Template, type TemplateField, type TemplateLayout } from './encoding.js';
import type { FlowExport } from './flows.js';
import type { UserRecord } from './usage.js';

export const TEMPLATE_IDS = { flowIPv4: FIRST_TEMPLATE_ID, flowIPv6: FIRST_TEMPLATE_ID + 1, user: FIRST_TEMPLATE_ID + 2 } as const;

/** A flow record with its addresses resolved to the order of its direction. */
export interface WireFlow {
  src: Uint8Array;
  dst: Uint8Array;
  srcPort: number;
  dstPort: number;
  e: FlowExport;
}

function flowTemplate(id: number, family: 4 | 6, opts: ElementOptions, processNames: boolean, cgroupPathOf: CgroupPathOf): Template<WireFlow> {
  const owner = ownerFields(opts, processNames);
  const fields: TemplateField<WireFlow>[] = [
    { spec: family === 4 ? IANA.sourceIPv4Address : IANA.sourceIPv6Address, value: (r) => r.src },
    { spec: family === 4 ? IANA.destinationIPv4Address : IANA.destinationIPv6Address, value: (r) => r.dst },
    { spec: IANA.sourceTransportPort, value: (r) => r.srcPort },
    { spec: IANA.destinationTransportPort, value: (r) => r.dstPort },
    { spec: IANA.protocolIdentifier, value: (r) => r.e.flow.protocol },
    { spec: IANA.flowDirection, value: (r) => r.e.direction },
    { spec: IANA.flowEndReason, value: (r) => r.e.endReason },
    { spec: IANA.flowStartMilliseconds, value: (r) => r.e.startMs },
    { spec: IANA.flowEndMilliseconds, value: (r) => r.e.endMs },
    { spec: IANA.octetDeltaCount, value: (r) => r.e.octets },
    { spec: IANA.packetDeltaCount, value: (r) => r.e.packets },
    { spec: IANA.transportOctetDeltaCount, value: (r) => r.e.payloadOctets },
    { spec: owner.uid, value: (r) => r.e.flow.uid },
    { spec: ubiaField(opts, 'gid'), value: (r) => r.e.flow.gid },
    { spec: owner.pid, value: (r) => r.e.flow.pid },
    { spec: ubiaField(opts, 'cgroup_id'), value: (r) => r.e.flow.cgroupId },
    { spec: owner.userName, value: (r) => r.e.flow.user },
  ];
  if (owner.processName) {
    fields.push({ spec: owner.processName, value: (r) => r.e.flow.comm });
    fields.push({ spec: ubiaField(opts, 'cgroup_path'), value: (r) => cgroupPathOf(r.e.flow.cgroupId) });
    // the agent names each flow's cgroup by its [units] rules
    fields.push({ spec: ubiaField(opts, 'unit_name'), value: (r) => r.e.flow.workload?.name ?? '' });
  }
  return { id, fields };
}

function userTemplate(opts: ElementOptions): Template<UserRecord> {
  const owner = ownerFields(opts, false);
  return {
    id: TEMPLATE_IDS.user,
    fields: [
      { spec: owner.uid, value: (r) => r.uid },
      { spec: IANA.flowStartMilliseconds, value: (r) => r.startMs },
      { spec: IANA.flowEndMilliseconds, value: (r) => r.endMs },
      ...USER_COUNTER_ELEMENTS.map((e) => ({ spec: ubiaField(opts, e.key), value: (r: UserRecord) => r[e.counter] })),
      { spec: owner.userName, value: (r) => r.user },
    ],
  };
}

/** How remote addresses are rewritten for one collector (local addresses are kept: they
 *  are this host's). */
export function remoteAddressPolicy(c: IpfixCollectorConfig): ((a: Uint8Array) => Uint8Array) | null {
  switch (c.anonymize) {
    case 'none': return null;
    case 'truncate':
      return (a) => truncateAddress(a, a.length === 4 ? c.truncate_ipv4_prefix : c.truncate_ipv6_prefix);
    case 'cryptopan': return createCryptoPan(readCryptoPanKey(c.cryptopan_key_file!));
  }
}

export interface RecordEncoder {
  /** the Template Set announcing every template this collector uses */
  readonly templateSet: Buffer;
  readonly flows: boolean;
  readonly users: boolean;
  /** encodes into `scratch` at 0; returns the template ID and length */
  encodeFlow(e: FlowExport, scratch: Buffer): { setId: number; length: number };
  encodeUser(u: UserRecord, scratch: Buffer): { setId: number; length: number };
  /** size a scratch buffer must have */
  readonly maxRecordBytes: number;
}

const ADDRESS_CACHE_LIMIT = 65536;

export function createRecordEncoder(c: IpfixCollectorConfig, opts: ElementOptions, cgroupPathOf: CgroupPathOf): RecordEncoder {
  const flow4 = flowTemplate(TEMPLATE_IDS.flowIPv4, 4, opts, c.process_names, cgroupPathOf);
  const flow6 = flowTemplate(TEMPLATE_IDS.flowIPv6, 6, opts, c.process_names, cgroupPathOf);
  const user = userTemplate(opts);
  const flows = c.records.includes('flows');
  const users = c.records.includes('users');
  const templates: TemplateLayout[] = [];
  if (flows) templates.push(flow4, flow6);
  if (users) templates.push(user);
  const rewriteRemote = remoteAddressPolicy(c);

  // address text → bytes (after anonymisation), per family since an IPv6 socket may report
  // an IPv4 peer in dotted form: flows repeat the same few addresses
  const local = { 4: new Map<string, Uint8Array>(), 6: new Map<string, Uint8Array>() };
  const remote = { 4: new Map<string, Uint8Array>(), 6: new Map<string, Uint8Array>() };
  const bytesOf = (cache: Map<string, Uint8Array>, text: string, family: 4 | 6, rewrite: ((a: Uint8Array) => Uint8Array) | null) => {
    let a = cache.get(text);
    if (a === undefined) {
      a = parseAddress(text, family);
      if (rewrite) a = rewrite(a);
      if (cache.size >= ADDRESS_CACHE_LIMIT) cache.clear();
      cache.set(text, a);
    }
    return a;
  };
  // one object reused for every record (encoding is synchronous): no allocation per record
  let wire: WireFlow | null = null;

  return {
    templateSet: encodeTemplateSet(templates),
    flows,
    users,
    maxRecordBytes: Math.max(maxRecordBytes(flow4), maxRecordBytes(flow6), maxRecordBytes(user)),
    encodeFlow(e, scratch) {
      const f = e.flow;
      const family = f.family;
      const l = bytesOf(local[family], f.localAddress, family, null);
      const r = bytesOf(remote[family], f.remoteAddress, family, rewriteRemote);
      wire ??= { src: l, dst: r, srcPort: 0, dstPort: 0, e };
      if (e.direction === DIRECTION.egress) {
        wire.src = l; wire.dst = r; wire.srcPort = f.localPort; wire.dstPort = f.remotePort;
      } else {
        wire.src = r; wire.dst = l; wire.srcPort = f.remotePort; wire.dstPort = f.localPort;
      }
      wire.e = e;
      const t = family === 4 ? flow4 : flow6;
      return { setId: t.id, length: encodeRecord(t, wire, scratch, 0) };
    },
    encodeUser(u, scratch) {
      return { setId: user.id, length: encodeRecord(user, u, scratch, 0) };
    },
  };
}
