// An unconnected UDP socket (sendto() without connect(): DNS, QUIC, NTP) that talks to
// several peers, through the real agent: one flow per remote address and port in `ubia
// flows --json` and in the IPFIX records tshark decodes, up to agent.unconnected_peers;
// datagrams of further peers count in the user's totals and as peer overflows in `ubia
// status`. IPv4 and IPv6, a test user, echo servers in a network namespace.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FlowRow, FlowsResult, StatusResult, UsersResult } from '../src/control/protocol.js';
import { cli, startAgent, type AgentProcess } from './support/agent.js';
import { startCapture, tsharkMessages, udpSink } from './support/ipfix.js';
import { createTestbed, freePort, type Testbed, type TestUser } from './support/testbed.js';
import { udpPeers } from './support/traffic.js';
import { waitFor } from './support/wait.js';

const PEERS = 3; // agent.unconnected_peers: the 4th peer of each socket is beyond it
const COUNT = 5; // datagrams to each peer, each echoed
const SIZES = [100, 200, 300, 400];

let bed: Testbed;
let alice: TestUser;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  // the testbed's netns holds the echo servers (its sink is not used)
  bed = await createTestbed('udp-peers', { users: 1, sinkPort: await freePort() });
  alice = bed.users[0]!;
});

afterAll(async () => {
  await agent?.stop();
  await bed?.remove();
});

describe('unconnected UDP: one flow per peer', () => {
  it('in ubia flows and in IPFIX, IPv4 and IPv6, exact per peer; peers beyond the bound in the totals and counted', async () => {
    const ipfixPort = await freePort();
    const sink = await udpSink(ipfixPort);
    const capture = await startCapture(`udp port ${ipfixPort}`, bed.dir);
    let pcap: string | undefined;
    try {
      agent = await startAgent({
        dir: bed.dir,
        pinDir: bed.pinDir,
        agentExtra: `unconnected_peers = ${PEERS}\n`,
        extra: `\n[ipfix]\nactive_timeout = 60\nusage_interval = 1\ncollectors = [{ address = "127.0.0.1", port = ${ipfixPort} }]\n`,
      });
      const families = [
        { peer: bed.net.peerV4, local: bed.net.hostV4, hdr: 28 },
        { peer: bed.net.peerV6, local: bed.net.hostV6, hdr: 48 },
      ];
      const runs = [];
      for (const f of families) {
        const peers = [];
        for (const size of SIZES) peers.push({ port: await freePort(), size });
        const client = await udpPeers(f.peer, peers, COUNT, { server: { net: bed.net }, client: { user: alice } });
        runs.push({ ...f, peers, lport: client.lport! });
      }
      const all = runs.length * COUNT * SIZES.reduce((a, b) => a + b); // each way

      // ubia flows: the sockets' peer flows, ended at their close, nothing to 0.0.0.0 or ::
      const mine = (rows: FlowRow[]) => rows.filter((r) => r.uid === alice.uid && r.protocol === 17);
      const flows = await waitFor('both sockets\' peer flows to end', () => {
        const r = JSON.parse(cli(agent!.socket, ['flows', '--user', alice.name, '--json']).stdout) as FlowsResult;
        return mine(r.ended).length >= 2 * PEERS && mine(r.active).length === 0 ? mine(r.ended) : undefined;
      });
      const row = (f: FlowRow) => [f.localAddress, f.localPort, f.remoteAddress, f.remotePort, f.txPayloadBytes, f.rxPayloadBytes, f.txPackets, f.rxPackets, f.txBytes, f.rxBytes];
      const want = runs.flatMap((r) =>
        r.peers.slice(0, PEERS).map((p) => [r.local, r.lport, r.peer, p.port, COUNT * p.size, COUNT * p.size, COUNT, COUNT, COUNT * (p.size + r.hdr), COUNT * (p.size + r.hdr)]),
      );
      expect(flows.map(row).sort()).toEqual(want.sort());

      // the user's totals have every datagram, the 4th peers' too; those are peer overflows
      const users = await waitFor('the totals', () => {
        const u = (JSON.parse(cli(agent!.socket, ['users', '--since', '1h', '--json']).stdout) as UsersResult).users.find((x) => x.uid === alice.uid);
        return u && u.rxPayloadBytes >= all ? u : undefined;
      });
      expect([users.txPayloadBytes, users.rxPayloadBytes]).toEqual([all, all]);
      const status = JSON.parse(cli(agent.socket, ['status', '--json']).stdout) as StatusResult;
      expect(status.meter.health.overflows.peers).toBeGreaterThanOrEqual(2 * 2 * COUNT);
      expect(status.meter.health.overflows.flows).toBe(0);
      expect(cli(agent.socket, ['status']).stdout).toMatch(/flows 0, peers \d+,/);

      expect(await agent.stop()).toBe(0);
      agent = undefined;
      pcap = await capture.stop();

      // IPFIX: per peer one egress and one ingress record with its addresses, ports and counts
      const records = (await tsharkMessages(pcap, `udp.port==${ipfixPort},cflow`))
        .flatMap((m) => m.records)
        .filter((r) => r['cflow.user_name'] === alice.name && r['cflow.protocol'] === '17');
      const exported = records.map((r) => {
        const v6 = r.setId === '257';
        const [src, dst] = v6 ? [r['cflow.srcaddrv6'], r['cflow.dstaddrv6']] : [r['cflow.srcaddr'], r['cflow.dstaddr']];
        return [r['cflow.direction'], src, Number(r['cflow.srcport']), dst, Number(r['cflow.dstport']), Number(r['cflow.octets']), Number(r['cflow.packets']), r['cflow.flow_end_reason']];
      });
      const wantIpfix = runs.flatMap((r) =>
        r.peers.slice(0, PEERS).flatMap((p) => [
          ['1', r.local, r.lport, r.peer, p.port, COUNT * (p.size + r.hdr), COUNT, '3'],
          ['0', r.peer, p.port, r.local, r.lport, COUNT * (p.size + r.hdr), COUNT, '3'],
        ]),
      );
      expect(exported.sort()).toEqual(wantIpfix.sort());
    } finally {
      if (pcap === undefined) await capture.stop();
      await sink.close();
    }
  });
});
