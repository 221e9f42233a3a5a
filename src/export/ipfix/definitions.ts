// Definitions of ubia's enterprise IEs in the formats collectors load. packaging/ipfix/
// holds their output for the default PEN and element IDs (a test keeps them in sync);
// sites that set their own enterprise_number/element_ids generate theirs with these.
import type { IpfixElementIds } from './config.js';
import { UBIA_ELEMENTS, VARIABLE_LENGTH, type IeType } from './elements.js';

export interface DefinitionOptions {
  pen: number;
  ids: IpfixElementIds;
}

const FIXED: Partial<Record<IeType, number>> = { unsigned32: 4, unsigned64: 8 };

function elements(o: DefinitionOptions) {
  return UBIA_ELEMENTS.map((e) => ({
    ...e,
    id: o.ids[e.key],
    length: FIXED[e.type] ?? VARIABLE_LENGTH,
    // RFC 7012 §3.2: the per-user counts are deltas over the interval; the numbers (uid,
    // gid, pid, cgroup ID) name things; strings have no semantics
    semantics: e.counter !== undefined ? 'deltaCounter' : e.type === 'string' ? undefined : 'identifier',
  }));
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** IANA-registry-style XML that libfixbuf reads (`ipfixDump -e FILE`). */
export function fixbufXml(o: DefinitionOptions): string {
  const records = elements(o).map((e) => [
    '    <record>',
    `      <name>${e.name}</name>`,
    `      <dataType>${e.type}</dataType>`,
    ...(e.semantics ? [`      <dataTypeSemantics>${e.semantics}</dataTypeSemantics>`] : []),
    `      <cert:enterpriseId>${o.pen}</cert:enterpriseId>`,
    `      <elementId>${e.id}</elementId>`,
    `      <description><paragraph>${xmlEscape(e.description)}</paragraph></description>`,
    '    </record>',
  ].join('\n'));
  return `<?xml version='1.0' encoding='UTF-8'?>
<!-- ubia enterprise Information Elements (PEN ${o.pen}); load with: ipfixDump -e ubia-elements.xml -->
<registry id="ubia_ipfix" xmlns="http://www.iana.org/assignments" xmlns:cert="http://www.cert.org/ipfix">
  <title>ubia IPFIX Information Elements</title>
  <registry id="ubia-information-elements">
    <title>ubia Enterprise IPFIX Elements (PEN ${o.pen})</title>
${records.join('\n')}
  </registry>
</registry>
`;
}

/** pmacct `aggregate_primitives` file (nfacctd); the IANA userName (371) is added too. */
export function pmacctPrimitives(o: DefinitionOptions): string {
  const lines = elements(o).map((e) => {
    const len = e.length === VARIABLE_LENGTH ? 'vlen' : String(e.length);
    const semantics = e.type === 'string' ? 'str' : 'u_int';
    return `name=${e.name.toLowerCase()}\tfield_type=${o.pen}:${e.id}\tlen=${len}\tsemantics=${semantics}`;
  });
  return `! ubia enterprise Information Elements (PEN ${o.pen}) for pmacct's aggregate_primitives.
! Use: aggregate_primitives: /etc/pmacct/ubia.primitives
!      aggregate: src_host, dst_host, src_port, dst_port, proto, ubiauserid, ubiaprocessname
name=username\tfield_type=371\tlen=vlen\tsemantics=str
${lines.join('\n')}
`;
}

/** python-ipfix IESpec lines (`ipfix2csv --spec FILE`). */
export function pythonIpfixSpec(o: DefinitionOptions): string {
  return elements(o).map((e) => `${e.name}(${o.pen}/${e.id})<${e.type}>[${e.length}]`).join('\n') + '\n';
}
