// tshark (Wireshark's dissector) decodes ubia's IPFIX export over UDP and TCP on
// non-standard loopback ports: no malformed packets, no expert warnings (its sequence
// analysis flags any gap), and the user names, addresses, ports and counts the test sent.
import { createSocket } from 'node:dgram';
import { rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createIpfixExporter } from '../src/export/ipfix/index.js';
import type { FlowSnapshot } from '../src/export/types.js';
import { freePort, tempDir } from './support/testbed.js';
import { waitFor } from './support/wait.js';
import { flowSnapshot, ipfixConfig, silentLogger, startCapture, tcpSink, tsharkMessages, tsharkProblems, udpSink, type TsharkMessage } from './support/ipfix.js';

let dir: string;
beforeEach(() => { dir = tempDir('ubia-ipfix-tshark-'); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Known test users' flows, plus enough filler flows to need several UDP messages. */
function testFlows(): FlowSnapshot[] {
  const flows = [
    flowSnapshot({ user: 'ubia-test-alice', uid: 60001, localAddress: '127.0.0.1', localPort: 41001, remoteAddress: '127.0.0.53', remotePort: 8443, txBytes: 1520, txPackets: 4, rxBytes: 90_000, rxPackets: 62 }),
    flowSnapshot({ user: 'ubia-test-bob', uid: 60002, protocol: 17, localAddress: '127.0.0.1', localPort: 41002, remoteAddress: '127.0.0.54', remotePort: 5353, txBytes: 300, txPackets: 2, rxBytes: 0, rxPackets: 0 }),
    flowSnapshot({ user: 'ubia-test-bob', uid: 60002, family: 6, localAddress: '::1', localPort: 41003, remoteAddress: '::1', remotePort: 9000, txBytes: 700, txPackets: 5, rxBytes: 800, rxPackets: 6 }),
  ];
  for (let i = 0; i < 40; i++) {
    flows.push(flowSnapshot({ user: 'ubia-test-carol', uid: 60003, localPort: 42000 + i, remoteAddress: '127.0.0.9', remotePort: 80, txBytes: 100 + i, txPackets: 1, rxBytes: 200 + i, rxPackets: 2 }));
  }
  return flows;
}

function flowRecords(messages: TsharkMessage[]) {
  return messages.flatMap((m) => m.records).filter((r) => r.setId === '256' || r.setId === '257');
}

/** What each direction of each flow must look like in the collector. */
function expectRecordsOf(flows: FlowSnapshot[], records: Array<Record<string, string>>): void {
  for (const f of flows) {
    const v6 = f.family === 6;
    const src = v6 ? 'cflow.srcaddrv6' : 'cflow.srcaddr';
    const dst = v6 ? 'cflow.dstaddrv6' : 'cflow.dstaddr';
    const egress = records.filter((r) => r['cflow.direction'] === '1' && r['cflow.srcport'] === String(f.localPort) && r[src] === f.localAddress);
    expect(egress, `egress record of ${f.user} port ${f.localPort}`).toHaveLength(1);
    expect(egress[0]).toMatchObject({
      [dst]: f.remoteAddress, 'cflow.dstport': String(f.remotePort), 'cflow.protocol': String(f.protocol),
      'cflow.octets': String(f.txBytes), 'cflow.packets': String(f.txPackets), 'cflow.user_name': f.user, 'cflow.flow_end_reason': '3',
    });
    const ingress = records.filter((r) => r['cflow.direction'] === '0' && r['cflow.dstport'] === String(f.localPort) && r[dst] === f.localAddress);
    if (f.rxBytes === 0) {
      expect(ingress).toHaveLength(0);
      continue;
    }
    expect(ingress, `ingress record of ${f.user} port ${f.localPort}`).toHaveLength(1);
    expect(ingress[0]).toMatchObject({
      [src]: f.remoteAddress, 'cflow.srcport': String(f.remotePort),
      'cflow.octets': String(f.rxBytes), 'cflow.packets': String(f.rxPackets), 'cflow.user_name': f.user,
    });
  }
}

/** Within one stream, each message's sequence number counts the data records before it. */
function expectSequenceNumbers(messages: TsharkMessage[]): void {
  let expected = 0;
  for (const m of messages) {
    expect(m.sequence, `sequence number of the message in frame ${m.frame}`).toBe(expected);
    expected += m.records.length;
  }
}

describe('tshark decodes the export', () => {
  it('over UDP, to two collectors with their own streams', async () => {
    const flowsPort = await freePort();
    const usersPort = await freePort();
    const sinks = [await udpSink(flowsPort), await udpSink(usersPort)];
    const capture = await startCapture(`udp port ${flowsPort} or udp port ${usersPort}`, dir);
    const exporter = createIpfixExporter(ipfixConfig({
      observation_domain_id: 42,
      collectors: [
        { address: '127.0.0.1', port: flowsPort, records: ['flows'] },
        { address: '127.0.0.1', port: usersPort, records: ['users'] },
      ],
    }), { logger: silentLogger, spoolDir: dir });
    const flows = testFlows();
    for (const f of flows) exporter.flowEnded(f);
    const now = Date.now();
    exporter.usage({ startMs: now - 60_000, endMs: now, users: [
      { uid: 60001, user: 'ubia-test-alice', rxBytes: 90_000, txBytes: 1520, rxPackets: 62, txPackets: 4, rxPayloadBytes: 86_000, txPayloadBytes: 1300 },
    ] });
    await exporter.close();
    const pcap = await capture.stop();
    await Promise.all(sinks.map((s) => s.close()));

    expect(await tsharkProblems(pcap, `udp.port==${flowsPort},cflow`)).toBe('');
    expect(await tsharkProblems(pcap, `udp.port==${usersPort},cflow`)).toBe('');
    const flowMessages = await tsharkMessages(pcap, `udp.port==${flowsPort},cflow`);
    const userMessages = (await tsharkMessages(pcap, `udp.port==${usersPort},cflow`)).filter((m) => m.records.length > 0);
    expect(flowMessages.length).toBeGreaterThan(3); // 85 records do not fit one 1400-byte message
    expect(flowMessages.every((m) => m.domain === 42)).toBe(true);
    expectSequenceNumbers(flowMessages);
    const records = flowRecords(flowMessages);
    expect(records).toHaveLength(flows.length * 2 - 1); // bob's UDP flow received nothing
    expectRecordsOf(flows, records);

    expect(userMessages).toHaveLength(1);
    expect(userMessages[0]!.records).toHaveLength(1);
    expect(userMessages[0]!.records[0]!['cflow.user_name']).toBe('ubia-test-alice');
  });

  it('over TCP', async () => {
    const port = await freePort();
    const sink = await tcpSink(port);
    const capture = await startCapture(`tcp port ${port}`, dir);
    const exporter = createIpfixExporter(ipfixConfig({ collectors: [{ address: '127.0.0.1', port, transport: 'tcp' }] }), { logger: silentLogger, spoolDir: dir });
    const flows = testFlows();
    for (const f of flows) exporter.flowEnded(f);
    await waitFor('the TCP collector to take every record', () => exporter.status().queued === 0 && exporter.status().state === 'ok', 10_000);
    await exporter.close();
    const pcap = await capture.stop();
    await sink.close();

    expect(await tsharkProblems(pcap, `tcp.port==${port},cflow`)).toBe('');
    const messages = await tsharkMessages(pcap, `tcp.port==${port},cflow`);
    expectSequenceNumbers(messages);
    const records = flowRecords(messages);
    expect(records).toHaveLength(flows.length * 2 - 1);
    expectRecordsOf(flows, records);
  });

  it('names users and commands with the CACE profile', async () => {
    const port = await freePort();
    const sink = await udpSink(port);
    const capture = await startCapture(`udp port ${port}`, dir);
    const exporter = createIpfixExporter(ipfixConfig({ profile: 'cace', collectors: [{ address: '127.0.0.1', port }] }), { logger: silentLogger, spoolDir: dir });
    exporter.flowEnded(flowSnapshot({ user: 'ubia-test-alice', uid: 60001, pid: 31337, comm: 'ubia-curl', txBytes: 10, txPackets: 1 }));
    await exporter.close();
    const pcap = await capture.stop();
    await sink.close();
    expect(await tsharkProblems(pcap, `udp.port==${port},cflow`)).toBe('');
    const records = (await tsharkMessages(pcap, `udp.port==${port},cflow`)).flatMap((m) => m.records);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      'cflow.pie.cace.localuid': '60001', 'cflow.pie.cace.localpid': '31337',
      'cflow.pie.cace.localusername': 'ubia-test-alice', 'cflow.pie.cace.localcmd': 'ubia-curl',
    });
  });

  it('and the check above does catch a broken message', async () => {
    const port = await freePort();
    const sink = await udpSink(port);
    const capture = await startCapture(`udp port ${port}`, dir);
    // a template, a record (sequence 0), a sequence gap (7 instead of 1), a set too short
    const messages = [
      '000a 0024 00000000 00000000 00000001  0002 0014 0100 0001 0008 0004 0000 0000 0000 0000',
      '000a 0018 00000000 00000000 00000001  0100 0008 c0000201',
      '000a 0018 00000000 00000007 00000001  0100 0008 c0000202',
      '000a 0014 00000000 00000008 00000001  0100 0002',
    ];
    const s = createSocket('udp4');
    for (const m of messages) await new Promise<void>((r) => s.send(Buffer.from(m.replace(/ /g, ''), 'hex'), port, '127.0.0.1', () => r()));
    s.close();
    const pcap = await capture.stop();
    await sink.close();
    const problems = await tsharkProblems(pcap, `udp.port==${port},cflow`);
    expect(problems).toMatch(/Unexpected flow sequence for domain ID 1 \(expected 1, got 7\)/);
    expect(problems).toMatch(/too short/);
  });
});
