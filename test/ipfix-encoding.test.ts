// Byte-exact IPFIX encoding against vectors worked out by hand from RFC 7011, plus the
// pieces around it: addresses, Crypto-PAn, config validation, flow and usage records.
import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAddress, truncateAddress } from '../src/privacy/address.js';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { ipfixConfigSchema } from '../src/export/ipfix/config.js';
import { createCryptoPan } from '../src/privacy/cryptopan.js';
import { IANA, ownerFields } from '../src/export/ipfix/elements.js';
import { createMessagePacker, encodeRecord, encodeTemplateSet, type EncodedMessage, type Template } from '../src/export/ipfix/encoding.js';
import { createFlowTracker } from '../src/export/ipfix/flows.js';
import { createRecordEncoder } from '../src/export/ipfix/records.js';
import { DEFAULT_WORKLOAD_RULES, workloadNamer } from '../src/core/workload.js';
import { createUsageAggregator } from '../src/export/ipfix/usage.js';
import { createIpfixExporter } from '../src/export/ipfix/index.js';
import { freePort, tempDir } from './support/testbed.js';
import { waitFor } from './support/wait.js';
import { flowSnapshot, formatAddress, ipfixConfig, silentLogger, udpSink } from './support/ipfix.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// sourceIPv4Address (8, 4 bytes) + octetDeltaCount (1, 8 bytes): 12-byte records
const simple: Template<{ a: string; n: number }> = {
  id: 256,
  fields: [
    { spec: IANA.sourceIPv4Address, value: (r) => parseAddress(r.a, 4) },
    { spec: IANA.octetDeltaCount, value: (r) => r.n },
  ],
};

function packInto(maxBytes: number, domain = 7) {
  const messages: EncodedMessage[] = [];
  const packer = createMessagePacker({ maxBytes, observationDomainId: domain, sink: (m) => messages.push({ bytes: Buffer.from(m.bytes), records: m.records }), now: () => 0x5f5e1000 });
  return { packer, messages };
}

function record<R>(t: Template<R>, r: R): Buffer {
  const buf = Buffer.alloc(70000);
  return buf.subarray(0, encodeRecord(t, r, buf, 0));
}

describe('template set (RFC 7011 §3.4.1)', () => {
  it('encodes IANA and enterprise field specifiers', () => {
    const withEnterprise: Template<unknown> = {
      id: 256,
      fields: [
        { spec: IANA.sourceIPv4Address, value: () => 0 },
        { spec: IANA.octetDeltaCount, value: () => 0 },
        { spec: { name: 'ubiaUserId', id: 1, pen: 32473, type: 'unsigned32', length: 4 }, value: () => 0 },
      ],
    };
    expect(encodeTemplateSet([simple as Template<unknown>]).toString('hex')).toBe(
      hex('0002 0010  0100 0002  0008 0004  0001 0008').toString('hex'));
    // enterprise bit set on the ID, then the 4-byte PEN (32473 = 0x7ed9)
    expect(encodeTemplateSet([withEnterprise]).toString('hex')).toBe(
      hex('0002 0018  0100 0003  0008 0004  0001 0008  8001 0004 00007ed9').toString('hex'));
  });

  it('refuses template IDs below 256', () => {
    expect(() => encodeTemplateSet([{ id: 255, fields: [] }])).toThrow(/256/);
  });
});

describe('messages (RFC 7011 §3.1, §3.3)', () => {
  it('packs templates then data under the size limit with header and sequence numbers', () => {
    const { packer, messages } = packInto(64);
    packer.addTemplates(encodeTemplateSet([simple as Template<unknown>]));
    for (let i = 0; i < 6; i++) packer.addRecord(256, record(simple, { a: `192.0.2.${i + 1}`, n: 1000 + i }));
    packer.flush();
    const rec = (i: number) => `c00002${(i + 1).toString(16).padStart(2, '0')} 00000000 0000${(1000 + i).toString(16).padStart(4, '0')}`;
    expect(messages.map((m) => m.bytes.toString('hex'))).toEqual([
      // 60 bytes: header (seq 0) + template set + data set of 2 records
      hex(`000a 003c 5f5e1000 00000000 00000007  0002 0010 0100 0002 0008 0004 0001 0008  0100 001c ${rec(0)} ${rec(1)}`).toString('hex'),
      // seq 2: two data records were sent before this message
      hex(`000a 0038 5f5e1000 00000002 00000007  0100 0028 ${rec(2)} ${rec(3)} ${rec(4)}`).toString('hex'),
      hex(`000a 0020 5f5e1000 00000005 00000007  0100 0010 ${rec(5)}`).toString('hex'),
    ]);
    expect(messages.map((m) => m.records)).toEqual([2, 3, 1]);
    expect(packer.sequence).toBe(6);
    packer.setSequence(2 ** 32 + 7); // modulo 2^32
    expect(packer.sequence).toBe(7);
  });

  it('pads a data set with zeros to a 4-byte boundary (§3.3.1)', () => {
    const fiveBytes: Template<null> = {
      id: 300,
      fields: [{ spec: IANA.sourceIPv4Address, value: () => parseAddress('192.0.2.1', 4) }, { spec: IANA.protocolIdentifier, value: () => 6 }],
    };
    const { packer, messages } = packInto(1400, 1);
    packer.addRecord(300, record(fiveBytes, null));
    packer.flush();
    expect(messages[0]!.bytes.toString('hex')).toBe(
      hex('000a 001c 5f5e1000 00000000 00000001  012c 000c c0000201 06 000000').toString('hex'));
  });

  it('never emits an empty message and rejects a record larger than a message', () => {
    const { packer, messages } = packInto(64);
    packer.flush();
    expect(messages).toHaveLength(0);
    expect(() => packer.addRecord(256, Buffer.alloc(60))).toThrow(/does not fit/);
  });
});

describe('variable-length strings (RFC 7011 §7)', () => {
  const user: Template<string> = { id: 256, fields: [{ spec: IANA.userName, value: (s) => s }] };
  it('uses a 1-byte length below 255 and 255 + 2 bytes from 255 on', () => {
    expect(record(user, 'a'.repeat(254))).toEqual(Buffer.concat([hex('fe'), Buffer.alloc(254, 'a')]));
    expect(record(user, 'b'.repeat(255))).toEqual(Buffer.concat([hex('ff 00ff'), Buffer.alloc(255, 'b')]));
    expect(record(user, 'c'.repeat(300))).toEqual(Buffer.concat([hex('ff 012c'), Buffer.alloc(300, 'c')]));
    expect(record(user, '')).toEqual(hex('00'));
  });
  it('encodes UTF-8 and cuts over-long strings at a character boundary', () => {
    expect(record(user, 'jürgen')).toEqual(hex('07 6a c3bc 7267656e'));
    const long = record(user, 'é'.repeat(3000)); // 6000 bytes → cut to 4096 (2048 characters)
    expect(long.subarray(0, 3)).toEqual(hex('ff 1000'));
    expect(long.length).toBe(3 + 4096);
  });
  it('writes CACE strings with their inner length byte (Wireshark packet-netflow.c)', () => {
    const cace = ownerFields({ pen: 32473, ids: ipfixConfig({ collectors: [{ address: 'x' }] }).element_ids, profile: 'cace' }, true);
    const t: Template<string> = { id: 256, fields: [{ spec: cace.userName, value: (s) => s }] };
    expect(cace.userName).toMatchObject({ id: 10, pen: 32622, length: 65535 });
    expect(record(t, 'alice')).toEqual(hex('06 05 616c696365'));
  });
});

describe('flow records', () => {
  const cfg = ipfixConfig({ collectors: [{ address: '192.0.2.9' }] });
  const opts = { pen: cfg.enterprise_number, ids: cfg.element_ids, profile: cfg.profile };
  const cgroupPathOf = (id: bigint) => (id === 0x1122334455n ? '/system.slice/dig.service' : '');
  const cgroupPathOfJob = (id: bigint) => (id === 0x77n ? '/system.slice/slurmstepd.scope/job_1234/step_0' : cgroupPathOf(id));
  // the agent names each flow's cgroup with the [units] rules
  const workloadOf = workloadNamer(DEFAULT_WORKLOAD_RULES);

  it('encodes an IPv6 egress record field by field', () => {
    const enc = createRecordEncoder(cfg.collectors[0]!, opts, cgroupPathOfJob);
    const flow = flowSnapshot({
      family: 6, protocol: 17, localAddress: '2001:db8::1', localPort: 5353, remoteAddress: 'fe80::2%lo', remotePort: 53,
      uid: 1001, gid: 100, pid: 77, cgroupId: 0x1122334455n, user: 'bob', comm: 'dig', workload: workloadOf('/system.slice/dig.service'),
    });
    const scratch = Buffer.alloc(enc.maxRecordBytes);
    const { setId, length } = enc.encodeFlow({ flow, direction: 1, endReason: 3, octets: 2 ** 40 + 5, packets: 3, payloadOctets: 99, startMs: 1_700_000_000_000, endMs: 1_700_000_000_250 }, scratch);
    expect(setId).toBe(257);
    expect(scratch.subarray(0, length).toString('hex')).toBe(hex(`
      20010db8000000000000000000000001  fe800000000000000000000000000002
      14e9 0035  11  01  03
      0000018bcfe56800 0000018bcfe568fa
      0000010000000005 0000000000000003 0000000000000063
      000003e9 00000064 0000004d 0000001122334455
      03 626f62  03 646967  19 2f73797374656d2e736c6963652f6469672e73657276696365
      0b 6469672e73657276696365`).toString('hex'));
  });

  it('sends the unit the agent named a flow\'s cgroup (ubiaUnitName, PEN/13): a Slurm job step', () => {
    const enc = createRecordEncoder(cfg.collectors[0]!, opts, cgroupPathOfJob);
    const scratch = Buffer.alloc(enc.maxRecordBytes);
    const flow = flowSnapshot({ user: 'bob', comm: 'srun', cgroupId: 0x77n, workload: workloadOf(cgroupPathOfJob(0x77n)) });
    const { length } = enc.encodeFlow({ flow, direction: 1, endReason: 3, octets: 1, packets: 1, payloadOctets: 0, startMs: 0, endMs: 0 }, scratch);
    const path = '/system.slice/slurmstepd.scope/job_1234/step_0';
    // … userName, process name, cgroup path, unit name: the record's last four strings
    expect(scratch.subarray(0, length).subarray(-(4 + 5 + 1 + path.length + 1 + 15)).toString('hex')).toBe(hex(`
      03 626f62  04 7372756e  2e ${Buffer.from(path).toString('hex')}
      0f 6a6f625f313233342f737465705f30`).toString('hex'));
    // the template announces it: enterprise bit + 13, variable length, PEN 32473
    expect(enc.templateSet.includes(hex('800d ffff 00007ed9'))).toBe(true);
  });

  it('keeps IPv4 and IPv4-mapped IPv6 forms of one address apart', () => {
    const enc = createRecordEncoder(cfg.collectors[0]!, opts, cgroupPathOfJob);
    const scratch = Buffer.alloc(enc.maxRecordBytes);
    const rec = (family: 4 | 6) => ({ flow: flowSnapshot({ family, localAddress: '192.0.2.1', remoteAddress: '198.51.100.1' }), direction: 1 as const, endReason: 3, octets: 1, packets: 1, payloadOctets: 0, startMs: 0, endMs: 0 });
    expect(enc.encodeFlow(rec(4), scratch).setId).toBe(256);
    expect(enc.encodeFlow(rec(6), scratch).setId).toBe(257);
    expect(scratch.subarray(0, 16).toString('hex')).toBe('00000000000000000000ffffc0000201');
  });

  it('leaves process names and cgroup paths out when a collector asks for it', () => {
    const enc = createRecordEncoder({ ...cfg.collectors[0]!, process_names: false }, opts, cgroupPathOfJob);
    const scratch = Buffer.alloc(enc.maxRecordBytes);
    const { length } = enc.encodeFlow({ flow: flowSnapshot({ user: 'bob', comm: 'secret-tool', cgroupId: 0x1122334455n, workload: workloadOf('/system.slice/dig.service') }), direction: 0, endReason: 3, octets: 1, packets: 1, payloadOctets: 0, startMs: 0, endMs: 0 }, scratch);
    expect(scratch.subarray(0, length).includes(Buffer.from('secret-tool'))).toBe(false);
    expect(scratch.subarray(0, length).includes(Buffer.from('dig.service'))).toBe(false);
    expect(enc.templateSet.includes(hex('800d ffff'))).toBe(false); // no ubiaUnitName either
    expect(scratch.subarray(length - 4, length).toString()).toBe('\x03bob');
  });

  it('truncates remote addresses to the configured prefix, never local ones', () => {
    const enc = createRecordEncoder({ ...cfg.collectors[0]!, anonymize: 'truncate', truncate_ipv4_prefix: 16 }, opts, cgroupPathOfJob);
    const scratch = Buffer.alloc(enc.maxRecordBytes);
    enc.encodeFlow({ flow: flowSnapshot({ localAddress: '10.1.2.3', remoteAddress: '198.51.100.77' }), direction: 1, endReason: 3, octets: 1, packets: 1, payloadOctets: 0, startMs: 0, endMs: 0 }, scratch);
    expect(formatAddress(scratch.subarray(0, 4))).toBe('10.1.2.3');
    expect(formatAddress(scratch.subarray(4, 8))).toBe('198.51.0.0');
  });
});

describe('exporter', () => {
  it('skips and counts a record it cannot encode instead of throwing into the agent', async () => {
    const dir = tempDir('ubia-ipfix-exporter-');
    const exporter = createIpfixExporter(ipfixConfig({ collectors: [{ address: '127.0.0.1', port: 9 }] }), { logger: silentLogger, spoolDir: dir });
    try {
      expect(() => exporter.flowEnded(flowSnapshot({ remoteAddress: 'not-an-address', txBytes: 1, txPackets: 1 }))).not.toThrow();
      expect(exporter.status()).toMatchObject({ dropped: 1, extra: { unencodable: 1 } });
    } finally {
      await exporter.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('skips and counts a record too large for the smallest UDP message size, and sends the others', async () => {
    const dir = tempDir('ubia-ipfix-exporter-');
    const port = await freePort();
    const sink = await udpSink(port);
    const exporter = createIpfixExporter(ipfixConfig({ collectors: [{ address: '127.0.0.1', port, udp_message_bytes: 512 }] }), { logger: silentLogger, spoolDir: dir });
    try {
      exporter.flowEnded(flowSnapshot({ user: 'x'.repeat(600), txBytes: 1, txPackets: 1 }));
      exporter.flowEnded(flowSnapshot({ user: 'ubia-test-fits', txBytes: 1, txPackets: 1 }));
      expect(exporter.status()).toMatchObject({ dropped: 1, extra: { unencodable: 1 } });
      await exporter.close();
      await waitFor('the record that fits', () => sink.datagrams.some((d) => d.includes('ubia-test-fits')), 5000);
      expect(sink.datagrams.some((d) => d.includes('x'.repeat(600)))).toBe(false);
    } finally {
      await exporter.close();
      await sink.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('addresses', () => {
  it('parses and formats IPv4 and IPv6 text forms', () => {
    expect(formatAddress(parseAddress('192.0.2.1', 4))).toBe('192.0.2.1');
    expect(Buffer.from(parseAddress('::ffff:192.0.2.1', 6)).toString('hex')).toBe('00000000000000000000ffffc0000201');
    expect(Buffer.from(parseAddress('192.0.2.1', 6)).toString('hex')).toBe('00000000000000000000ffffc0000201');
    expect(formatAddress(parseAddress('2001:db8:0:0:1::1', 6))).toBe('2001:db8::1:0:0:1');
    expect(formatAddress(parseAddress('::', 6))).toBe('::');
    expect(() => parseAddress('300.1.1.1', 4)).toThrow(/IPv4/);
    expect(() => parseAddress('2001:db8::g', 6)).toThrow(/IPv6/);
  });
  it('truncates to a prefix', () => {
    expect(formatAddress(truncateAddress(parseAddress('192.0.2.77', 4), 24))).toBe('192.0.2.0');
    expect(formatAddress(truncateAddress(parseAddress('192.0.2.255', 4), 25))).toBe('192.0.2.128');
    expect(formatAddress(truncateAddress(parseAddress('2001:db8:1234:5678::1', 6), 48))).toBe('2001:db8:1234::');
    expect(formatAddress(truncateAddress(parseAddress('192.0.2.77', 4), 0))).toBe('0.0.0.0');
  });
});

describe('Crypto-PAn', () => {
  // the sample key and trace of the Crypto-PAn reference distribution
  const key = Uint8Array.from([21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16,
    216, 152, 143, 131, 121, 121, 101, 39, 98, 87, 76, 45, 42, 132, 34, 2]);
  const anonymize = createCryptoPan(key);
  it.each([
    ['128.11.68.132', '135.242.180.132'], ['129.118.74.4', '134.136.186.123'], ['130.132.252.244', '133.68.164.234'],
    ['141.223.7.43', '141.167.8.160'], ['141.233.145.108', '141.129.237.235'], ['152.163.225.39', '151.140.114.167'],
    ['156.29.3.236', '147.225.12.42'], ['165.247.96.84', '162.9.99.234'], ['166.107.77.190', '160.132.178.185'],
    ['192.102.249.13', '252.138.62.131'], ['10.185.25.118', '117.161.29.118'],
  ])('IPv4 %s → %s', (raw, anon) => {
    expect(formatAddress(anonymize(parseAddress(raw, 4)))).toBe(anon);
  });
  it.each([
    ['::1', '78ff:f001:9fc0:20df:8380:b1f1:704:ed'], ['2001:db8::1', '4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1e'],
    ['2001:db8::2', '4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1c'],
  ])('IPv6 %s → %s (128-bit extension)', (raw, anon) => {
    expect(formatAddress(anonymize(parseAddress(raw, 6)))).toBe(anon);
  });
});

describe('config', () => {
  const problems = (section: unknown) => {
    const r = ipfixConfigSchema.safeParse(section);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };
  it('accepts a minimal section and fills in the documented defaults', () => {
    const c = ipfixConfig({ collectors: [{ address: 'collector.example' }] });
    expect(c.collectors[0]).toMatchObject({ port: 4739, transport: 'udp', udp_message_bytes: 1400, template_refresh: 600, anonymize: 'none', process_names: true });
    expect(c).toMatchObject({ enterprise_number: 32473, active_timeout: 60, profile: 'ubia' });
    expect(c.element_ids.uid).toBe(1);
    expect(ipfixConfigSchema.parse(undefined)).toBeUndefined();
  });
  it('explains what is wrong', () => {
    expect(problems({ collectors: [] })).toEqual(['collectors: no IPFIX collector configured: add at least one [[ipfix.collectors]] table with an address']);
    expect(problems({ collectors: [{}] })).toEqual(['collectors.0.address: each [[ipfix.collectors]] table needs address = "<host or IP of the IPFIX collector>"']);
    expect(problems({ collectors: [{ address: '' }] })[0]).toMatch(/collector address is empty/);
    expect(problems({ collectors: [{ address: 'c', port: 70000 }] })[0]).toMatch(/^collectors\.0\.port: .*65535/);
    expect(problems({ collectors: [{ address: 'c', port: 0 }] })[0]).toMatch(/^collectors\.0\.port: /);
    expect(problems({ collectors: [{ address: 'c', udp_message_bytes: 300 }] })[0]).toMatch(/^collectors\.0\.udp_message_bytes: .*at least 512/);
    expect(problems({ collectors: [{ address: 'c' }], enterprise_number: 2 ** 32 })[0]).toMatch(/^enterprise_number: .*4294967295/);
    expect(problems({ collectors: [{ address: 'c' }], enterprise_number: 0 })[0]).toMatch(/^enterprise_number: /);
    expect(problems({ collectors: [{ address: 'c', anonymize: 'cryptopan' }] })[0]).toMatch(/cryptopan_key_file/);
    expect(problems({ collectors: [{ address: 'c', colour: 'red' }] })[0]).toMatch(/colour/);
    expect(problems({ collectors: [{ address: 'c' }], element_ids: { uid: 4 } })[0]).toMatch(/different/);
    expect(problems({ collectors: [{ address: 'c' }, { address: 'c', port: 4739 }] })[0]).toMatch(/^collectors: the same collector/);
  });

  it('names the line and says what to do in the agent\'s config file', () => {
    const text = '[ipfix]\nenterprise_number = 4294967296\n\n[[ipfix.collectors]]\nport = 0\n';
    let reported: string[] = [];
    try {
      parseConfig(text, 'ubia.toml');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      reported = (e as ConfigError).problems;
    }
    expect(reported.map((p) => p.replace(/ \(allowed: .*\)$/, ''))).toEqual([
      'ubia.toml:4: ipfix.collectors.0.address: each [[ipfix.collectors]] table needs address = "<host or IP of the IPFIX collector>"',
      'ubia.toml:5: ipfix.collectors.0.port: the collector port must be 1..65535 (IPFIX collectors usually listen on 4739)',
      'ubia.toml:2: ipfix.enterprise_number: enterprise_number must be a Private Enterprise Number, 1..4294967295: your organisation\'s number from IANA, or leave it out for 32473 (documentation use)',
    ]);
  });
});

describe('flow tracker', () => {
  const t0 = 1_700_000_000_000;
  const snap = (over: Parameters<typeof flowSnapshot>[0]) => flowSnapshot({ cookie: 7n, firstSeenMs: t0, lastSeenMs: t0, ...over });

  it('reports deltas at the active timeout, then the rest at the end of the flow', () => {
    const tr = createFlowTracker({ activeTimeoutMs: 60_000, idleTimeoutMs: 300_000 });
    expect(tr.active([snap({ txBytes: 100, txPackets: 1, lastSeenMs: t0 + 1000 })], t0 + 30_000)).toEqual([]);
    const first = tr.active([snap({ txBytes: 500, txPackets: 5, rxBytes: 60, rxPackets: 1, lastSeenMs: t0 + 59_000 })], t0 + 60_000);
    expect(first.map((r) => [r.direction, r.octets, r.packets, r.endReason, r.startMs, r.endMs])).toEqual([
      [0, 60, 1, 2, t0, t0 + 59_000], [1, 500, 5, 2, t0, t0 + 59_000],
    ]);
    const last = tr.ended(snap({ txBytes: 700, txPackets: 7, rxBytes: 60, rxPackets: 1, lastSeenMs: t0 + 70_000 }));
    // ingress had nothing new but still gets its end-of-flow record
    expect(last.map((r) => [r.direction, r.octets, r.packets, r.endReason, r.startMs])).toEqual([
      [0, 0, 0, 3, t0 + 59_000], [1, 200, 2, 3, t0 + 59_000],
    ]);
    expect(tr.size).toBe(0);
  });

  it('reports idle flows, forgets unlisted ones, and forces the rest out at shutdown', () => {
    const tr = createFlowTracker({ activeTimeoutMs: 60_000, idleTimeoutMs: 10_000 });
    tr.active([snap({ txBytes: 10, txPackets: 1 }), snap({ cookie: 8n, txBytes: 5, txPackets: 1, lastSeenMs: t0 + 9_000 })], t0 + 9_500);
    const idle = tr.active([snap({ txBytes: 10, txPackets: 1 }), snap({ cookie: 8n, txBytes: 6, txPackets: 2, lastSeenMs: t0 + 15_000 })], t0 + 15_000);
    expect(idle.map((r) => [r.flow.cookie, r.octets, r.endReason])).toEqual([[7n, 10, 1]]);
    const gone = tr.active([], t0 + 26_000);
    expect(gone.map((r) => [r.flow.cookie, r.octets, r.endReason])).toEqual([[8n, 6, 1]]);
    tr.active([snap({ cookie: 9n, rxBytes: 3, rxPackets: 1, lastSeenMs: t0 + 26_000 })], t0 + 27_000);
    expect(tr.shutdown().map((r) => [r.flow.cookie, r.direction, r.octets, r.endReason])).toEqual([[9n, 0, 3, 4]]);
  });

  it('continues from saved counts after a restart instead of reporting everything again', () => {
    const before = createFlowTracker({ activeTimeoutMs: 60_000, idleTimeoutMs: 300_000 });
    before.active([snap({ txBytes: 100, txPackets: 1 })], t0 + 1000);
    before.shutdown();
    const after = createFlowTracker({ activeTimeoutMs: 60_000, idleTimeoutMs: 300_000, resume: before.reported() });
    expect(after.ended(snap({ txBytes: 150, txPackets: 2, lastSeenMs: t0 + 5000 })).map((r) => r.octets)).toEqual([50]);
  });
});

describe('usage aggregator', () => {
  const u = (uid: number, tx: number) => ({ uid, user: `u${uid}`, rxBytes: 0, txBytes: tx, rxPackets: 0, txPackets: 1, rxPayloadBytes: 0, txPayloadBytes: tx });
  const txOf = (records: { uid: number; txBytes: number }[]) => records.map((r) => [r.uid, r.txBytes]);

  it('sums polls into one record per user per interval, sent once the checkpoint after it is saved', () => {
    const agg = createUsageAggregator(60_000);
    agg.add({ startMs: 0, endMs: 30_000, users: [u(1, 10), u(2, 5)] });
    agg.add({ startMs: 30_000, endMs: 60_000, users: [u(1, 20)] });
    expect(agg.atCheckpoint().users).toEqual([]);
    const out = agg.checkpointed();
    expect(out.map((r) => [r.uid, r.txBytes, r.txPackets, r.startMs, r.endMs])).toEqual([[1, 30, 2, 0, 60_000], [2, 5, 1, 0, 60_000]]);
    expect(agg.checkpointed()).toEqual([]);
    agg.add({ startMs: 60_000, endMs: 70_000, users: [u(3, 1)] });
    expect(agg.flush().map((r) => [r.uid, r.startMs, r.endMs])).toEqual([[3, 60_000, 70_000]]);
  });

  it('a crash after the checkpoint: the replayed deltas complete the saved window, nothing is lost or sent twice', () => {
    const before = createUsageAggregator(60_000);
    before.add({ startMs: 0, endMs: 30_000, users: [u(1, 10)] });
    const saved = structuredClone(before.atCheckpoint());
    before.checkpointed();
    before.add({ startMs: 30_000, endMs: 60_000, users: [u(1, 20)] }); // complete, but not yet sent: killed here
    const after = createUsageAggregator(60_000, saved);
    // the restarted agent hands over everything since the checkpoint, with the downtime's traffic
    after.add({ startMs: 30_000, endMs: 65_000, users: [u(1, 27)] });
    expect(txOf(after.checkpointed())).toEqual([[1, 37]]);
  });
});
