// The real agent exports what the real kernel meter saw. A test user exchanges UDP
// datagrams with a network namespace over IPv4 and IPv6 (sizes known, so every wire count
// is known) and makes a slow TCP upload that outlives the active timeout. tshark decodes
// the agent's UDP export (no malformed packets, no sequence gaps) with the user's name,
// addresses, ports, bytes and packets, and libfixbuf's ipfixDump reads the per-user records
// in it; python3-ipfix's ipfix2csv collects the TCP export and decodes ubia's enterprise
// fields (uid, gid, pid, process name) for the same flows.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FlowsResult } from '../src/control/protocol.js';
import { cli, startAgent, type AgentProcess } from './support/agent.js';
import { createNet, createUser, freePort, removeMeter, removeUser, tempDir, type TestNet, type TestUser } from './support/testbed.js';
import { exchange } from './support/traffic.js';
import { waitFor } from './support/wait.js';
import { ipfixDump, startCapture, startIpfix2csv, tsharkMessages, tsharkProblems, udpPayloads, udpSink } from './support/ipfix.js';

const packaging = join(import.meta.dirname, '..', 'packaging', 'ipfix');
const spec = join(packaging, 'ubia.iespec');
const elementsXml = join(packaging, 'ubia-elements.xml');
const COLUMNS = ['userName', 'ubiaUserId', 'ubiaGroupId', 'ubiaProcessId', 'ubiaProcessName', 'flowDirection', 'flowEndReason',
  'sourceTransportPort', 'destinationTransportPort', 'octetDeltaCount', 'packetDeltaCount', 'transportOctetDeltaCount'] as const;
type CsvRecord = Record<(typeof COLUMNS)[number], string>;

let dir: string;
let pinDir: string;
let net: TestNet;
let alice: TestUser;
let agent: AgentProcess | undefined;

beforeAll(() => {
  dir = tempDir('ubia-ipfix-agent-');
  pinDir = `/sys/fs/bpf/ubia-test-ipfix-${process.pid}`;
  net = createNet();
  alice = createUser();
});

afterAll(async () => {
  await agent?.stop();
  net.remove();
  removeUser(alice);
  await removeMeter(pinDir);
  rmSync(dir, { recursive: true, force: true });
});

const parseCsv = (line: string): CsvRecord =>
  Object.fromEntries(line.slice(1, -1).split('","').map((v, i) => [COLUMNS[i]!, v])) as CsvRecord;

describe('agent → IPFIX collectors, real traffic', () => {
  it('exports the test user\'s flows with the right user, addresses, ports and counts', async () => {
    const udpPort = await freePort();
    const tcpPort = await freePort();
    const sink = await udpSink(udpPort);
    const csv = await startIpfix2csv(tcpPort, spec, [...COLUMNS]);
    const capture = await startCapture(`udp port ${udpPort}`, dir);
    try {
      // UDP gets flow and per-user records, TCP (ipfix2csv) the flow records
      const collectors = `[{ address = "127.0.0.1", port = ${udpPort} }, { address = "127.0.0.1", port = ${tcpPort}, transport = "tcp", records = ["flows"] }]`;
      agent = await startAgent({ dir, pinDir, extra: `\n[ipfix]\nactive_timeout = 1\nusage_interval = 1\ncollectors = ${collectors}\n` });
      const as = { server: { net }, client: { user: alice } };
      const v4Port = await freePort(), v6Port = await freePort(), tcpServerPort = await freePort();
      // 20 datagrams of 500 bytes each way over IPv4, 10 of 300 over IPv6
      const v4 = await exchange(['udp-echo', net.peerV4, String(v4Port), '20'], ['udp-ping', net.peerV4, String(v4Port), '20', '500'], as);
      const v6 = await exchange(['udp-echo', net.peerV6, String(v6Port), '10'], ['udp-ping', net.peerV6, String(v6Port), '10', '300'], as);
      // 4 × 10 000 bytes, 0.8 s apart: longer than the 1 s active timeout
      const slow = await exchange(['tcp-sink', net.peerV4, String(tcpServerPort)], ['tcp-send-slow', net.peerV4, String(tcpServerPort), '4', '10000', '800'], as);
      expect(slow.server.received).toBe(40_000);

      // the meter's own final figures for the TCP flow, as the agent lists ended flows
      const tcpFlow = await waitFor('the TCP flow to end in the agent', () => endedFlow(tcpServerPort));
      const csvRecords = () => csv.lines().slice(1).map(parseCsv).filter((r) => r.userName === alice.name);
      const tcpDone = () => csvRecords().some((r) => r.destinationTransportPort === String(tcpServerPort) && r.flowEndReason === '3');
      await waitFor('ipfix2csv to print the end of the TCP flow', tcpDone, 10_000);
      // `ubia status` shows each collector, and that nothing waits or was dropped
      const status = cli(agent.socket, ['status']).stdout;
      expect(status).toContain(`ipfix: ok — udp 127.0.0.1:${udpPort}: sending; tcp 127.0.0.1:${tcpPort}: connected (queued 0, dropped 0)`);
      expect(await agent.stop()).toBe(0);
      agent = undefined;
      const pcap = await capture.stop();

      // tshark: the UDP stream decodes cleanly; its records carry the exact counts
      expect(await tsharkProblems(pcap, `udp.port==${udpPort},cflow`)).toBe('');
      const messages = await tsharkMessages(pcap, `udp.port==${udpPort},cflow`);
      let before = 0;
      for (const m of messages) {
        expect(m.sequence, `sequence number of the message in frame ${m.frame}`).toBe(before);
        before += m.records.length;
      }
      const records = messages.flatMap((m) => m.records).filter((r) => r['cflow.user_name'] === alice.name);
      const one = (what: string, match: (r: Record<string, string>) => boolean) => {
        const found = records.filter(match);
        expect(found, what).toHaveLength(1);
        return found[0]!;
      };
      const v4Out = one('IPv4 egress', (r) => r.setId === '256' && r['cflow.direction'] === '1' && r['cflow.dstport'] === String(v4Port));
      expect(v4Out).toMatchObject({
        'cflow.srcaddr': net.hostV4, 'cflow.dstaddr': net.peerV4, 'cflow.srcport': String(v4.client.lport), 'cflow.protocol': '17',
        'cflow.octets': String(20 * (500 + 28)), 'cflow.packets': '20', 'cflow.transport_octet_delta_count': '10000', 'cflow.flow_end_reason': '3',
      });
      const v4In = one('IPv4 ingress', (r) => r.setId === '256' && r['cflow.direction'] === '0' && r['cflow.srcport'] === String(v4Port));
      expect(v4In).toMatchObject({
        'cflow.srcaddr': net.peerV4, 'cflow.dstaddr': net.hostV4, 'cflow.dstport': String(v4.client.lport),
        'cflow.octets': String(20 * (500 + 28)), 'cflow.packets': '20', 'cflow.flow_end_reason': '3',
      });
      const v6Out = one('IPv6 egress', (r) => r.setId === '257' && r['cflow.direction'] === '1' && r['cflow.dstport'] === String(v6Port));
      expect(v6Out).toMatchObject({
        'cflow.srcaddrv6': net.hostV6, 'cflow.dstaddrv6': net.peerV6, 'cflow.srcport': String(v6.client.lport), 'cflow.protocol': '17',
        'cflow.octets': String(10 * (300 + 48)), 'cflow.packets': '10', 'cflow.flow_end_reason': '3',
      });
      one('IPv6 ingress', (r) => r.setId === '257' && r['cflow.direction'] === '0' && r['cflow.octets'] === String(10 * 348) && r['cflow.srcport'] === String(v6Port));

      // the TCP upload: active-timeout records, then the end of the flow; the deltas add
      // up to the meter's final cumulative counts, the payload to what was sent
      const total = (rs: Array<Record<string, string>>, k: string) => rs.reduce((n, r) => n + Number(r[k]), 0);
      const upload = records.filter((r) => r['cflow.direction'] === '1' && r['cflow.dstport'] === String(tcpServerPort));
      expect(upload.map((r) => r['cflow.flow_end_reason']).slice(0, -1)).toContain('2');
      expect(upload.at(-1)!['cflow.flow_end_reason']).toBe('3');
      expect(total(upload, 'cflow.transport_octet_delta_count')).toBe(40_000);
      expect(total(upload, 'cflow.octets')).toBe(tcpFlow.txBytes);
      expect(total(upload, 'cflow.packets')).toBe(tcpFlow.txPackets);
      for (let i = 1; i < upload.length; i++) expect(upload[i]!['cflow.abstimestart']).toBe(upload[i - 1]!['cflow.abstimeend']);

      // the per-user interval records (decoded by ipfixDump from the same capture) count
      // all of the user's traffic: the payload she moved, the bytes and packets of her flows
      const dumped = await ipfixDump(await udpPayloads(pcap, udpPort, join(dir, 'udp.ipfix')), elementsXml);
      const perUser = dumped.messages.flatMap((m) => m.records).filter((r) => r.ubiaWireOctetsOut !== undefined && r.userName === alice.name);
      expect(perUser.length).toBeGreaterThan(0);
      expect(perUser.every((r) => r.ubiaUserId === String(alice.uid))).toBe(true);
      expect(total(perUser, 'ubiaPayloadOctetsOut')).toBe(10_000 + 3_000 + 40_000);
      expect(total(perUser, 'ubiaPayloadOctetsIn')).toBe(10_000 + 3_000);
      const egress = records.filter((r) => r['cflow.direction'] === '1');
      const ingress = records.filter((r) => r['cflow.direction'] === '0');
      expect(total(perUser, 'ubiaWireOctetsOut')).toBe(total(egress, 'cflow.octets'));
      expect(total(perUser, 'ubiaWirePacketsOut')).toBe(total(egress, 'cflow.packets'));
      expect(total(perUser, 'ubiaWireOctetsIn')).toBe(total(ingress, 'cflow.octets'));
      expect(total(perUser, 'ubiaWirePacketsIn')).toBe(total(ingress, 'cflow.packets'));

      // ipfix2csv over TCP: the enterprise fields of the same flows
      const v4Csv = csvRecords().filter((r) => r.destinationTransportPort === String(v4Port) && r.flowDirection === '1');
      expect(v4Csv).toEqual([{
        userName: alice.name, ubiaUserId: String(alice.uid), ubiaGroupId: String(alice.gid), ubiaProcessId: String(v4.client.pid),
        ubiaProcessName: 'python3', flowDirection: '1', flowEndReason: '3', sourceTransportPort: String(v4.client.lport),
        destinationTransportPort: String(v4Port), octetDeltaCount: String(20 * 528), packetDeltaCount: '20', transportOctetDeltaCount: '10000',
      }]);
      const uploadCsv = csvRecords().filter((r) => r.destinationTransportPort === String(tcpServerPort) && r.flowDirection === '1');
      expect(uploadCsv.map((r) => [r.octetDeltaCount, r.packetDeltaCount, r.transportOctetDeltaCount, r.flowEndReason]))
        .toEqual(upload.map((r) => [r['cflow.octets'], r['cflow.packets'], r['cflow.transport_octet_delta_count'], r['cflow.flow_end_reason']]));
      expect(uploadCsv.every((r) => r.ubiaProcessId === String(slow.client.pid) && r.ubiaUserId === String(alice.uid))).toBe(true);
    } finally {
      csv.stop();
      await sink.close();
    }
  });
});

function endedFlow(remotePort: number) {
  const r = cli(agent!.socket, ['flows', '--json']);
  return (JSON.parse(r.stdout) as FlowsResult).ended.find((f) => f.remotePort === remotePort && f.protocol === 6);
}
