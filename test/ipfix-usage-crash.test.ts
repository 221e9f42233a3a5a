// IPFIX per-user records are exact across a kill -9 of the agent: two test users move known
// traffic to a network namespace, the agent is SIGKILL-ed in the middle of it (after
// checkpoints, inside a usage window), restarted, sees more traffic and stops at SIGTERM.
// And across SIGHUP reloads that replace the exporters mid-traffic (the polls made while
// the old ones close and the new ones start go to the new ones).
// libfixbuf's ipfixDump decodes what a TCP collector received: each user's records (one
// per record number; the TCP transport may send a batch again after the kill, with the
// same numbers, docs/ipfix.md) sum to the ledger's totals, in every counter they carry.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zeroCounters } from '../src/core/counters.js';
import { Ledger } from '../src/ledger/ledger.js';
import type { TrafficCounters } from '../src/kernel/types.js';
import { startAgent, writeAgentConfig, type AgentProcess } from './support/agent.js';
import { createTestbed, freePort, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { ipfixDump, tcpSink, type TcpSink } from './support/ipfix.js';
import { sleep, waitFor } from './support/wait.js';

const ELEMENTS_XML = join(import.meta.dirname, '..', 'packaging', 'ipfix', 'ubia-elements.xml');
/** what the per-user records carry (ipfixDump's names), and the ledger counter of each */
const CARRIED: Array<[string, keyof TrafficCounters]> = [
  ['ubiaWireOctetsIn', 'rxBytes'], ['ubiaWireOctetsOut', 'txBytes'],
  ['ubiaWirePacketsIn', 'rxPackets'], ['ubiaWirePacketsOut', 'txPackets'],
  ['ubiaPayloadOctetsIn', 'rxPayloadBytes'], ['ubiaPayloadOctetsOut', 'txPayloadBytes'],
];

let bed: Testbed;
let alice: TestUser;
let bob: TestUser;
let sink: TcpSink | undefined;
let agent: AgentProcess | undefined;
/** files of received IPFIX handed to ipfixDump, numbered */
let dumps = 0;

beforeAll(async () => {
  bed = await createTestbed('ipfixcrash', { users: 2, sinkPort: 9000 });
  [alice, bob] = bed.users as [TestUser, TestUser];
});

afterAll(async () => {
  await agent?.kill();
  await sink?.close();
  await bed?.remove();
});

/** Every per-user record the collector received, once per (domain, sequence number). */
async function userRecords(): Promise<Record<string, string>[]> {
  const byNumber = new Map<string, Record<string, string>>();
  for (const chunks of sink!.connections) {
    const file = join(bed.dir, `ipfix-${dumps++}.bin`);
    writeFileSync(file, Buffer.concat(chunks));
    for (const m of (await ipfixDump(file, ELEMENTS_XML)).messages) {
      m.records.forEach((r, k) => {
        const number = `${m.domain}/${(m.sequence + k) >>> 0}`;
        const earlier = byNumber.get(number);
        if (earlier) expect(r, `record number ${number} sent again`).toEqual(earlier);
        else byNumber.set(number, r);
      });
    }
  }
  return [...byNumber.values()].filter((r) => r.ubiaWireOctetsOut !== undefined);
}

describe('IPFIX per-user records across a kill -9 of the agent', () => {
  it('sum to the ledger exactly: nothing lost with the open window, nothing sent again from the replayed deltas', async () => {
    const port = await freePort();
    sink = await tcpSink(port);
    const setup = {
      dir: bed.dir,
      pinDir: bed.pinDir,
      extra: `\n[ipfix]\nusage_interval = 3\n[[ipfix.collectors]]\naddress = "127.0.0.1"\nport = ${port}\ntransport = "tcp"\nrecords = ["users"]\n`,
    };
    const t0 = Date.now();
    agent = await startAgent(setup);
    const traffic = Promise.all([
      sinkTraffic(alice, { host: bed.net.peerV4, port: bed.sink.port, send: 3_000_000, reply: 1_000_000, ms: 7000 }),
      sinkTraffic(bob, { host: bed.net.peerV6, port: bed.sink.port, send: 400_000, reply: 4_000_000, ms: 7000 }),
    ]);
    // records of a complete window reached the collector; then 1.5 s more: at least one
    // checkpoint (flush_interval = 1) after them, and half of the next window open
    await waitFor('per-user records of both users', async () => {
      const uids = new Set((await userRecords()).map((r) => Number(r.ubiaUserId)));
      return uids.has(alice.uid) && uids.has(bob.uid) ? true : undefined;
    }, 10_000);
    await sleep(1500);
    await agent.kill();
    agent = await startAgent(setup);
    expect(await traffic).toEqual([1_000_000, 4_000_000]);
    await sinkTraffic(alice, { host: bed.net.peerV6, port: bed.sink.port, send: 200_000, reply: 300_000, ms: 500 });
    expect(await agent.stop()).toBe(0);
    agent = undefined;

    const records = await userRecords();
    for (const u of [alice, bob]) expectRecordsEqualLedger(u, records, bookedSince(t0, u));
    expect(bookedSince(t0, alice).txPayloadBytes).toBeGreaterThanOrEqual(3_200_000);
  });

  it('sum to the ledger exactly across SIGHUPs that replace the exporter mid-traffic', async () => {
    await sink?.close();
    const port = await freePort();
    sink = await tcpSink(port);
    // usage_interval alternates: every reload closes the exporters and starts others. A
    // Diameter exporter whose AAA server is down makes each close take its 1.5 s bound
    // (its STOPs wait for an answer), as a reload does while a peer is away: the polls
    // of that time must reach the new IPFIX exporter.
    const aaaDown = await freePort();
    const extra = (interval: number) =>
      `\n[ipfix]\nusage_interval = ${interval}\n[[ipfix.collectors]]\naddress = "127.0.0.1"\nport = ${port}\ntransport = "tcp"\nrecords = ["users"]\n` +
      `\n[diameter]\norigin_host = "agent.test.example"\norigin_realm = "test.example"\ndestination_realm = "test.example"\nservers = [ { host = "127.0.0.1", port = ${aaaDown} } ]\n`;
    const setup = { dir: bed.dir, pinDir: bed.pinDir, extra: extra(3) };
    // the ledger goes on from the test before: what it books from here is this agent's
    const before = new Map([alice, bob].map((u) => [u.uid, bookedSince(0, u)]));
    agent = await startAgent(setup);
    const traffic = Promise.all([
      sinkTraffic(alice, { host: bed.net.peerV4, port: bed.sink.port, send: 2_000_000, reply: 500_000, ms: 6000 }),
      sinkTraffic(bob, { host: bed.net.peerV6, port: bed.sink.port, send: 300_000, reply: 2_000_000, ms: 6000 }),
    ]);
    for (const interval of [2, 3, 2]) {
      await sleep(1500);
      writeAgentConfig({ ...setup, extra: extra(interval) });
      agent.proc.kill('SIGHUP');
    }
    expect(await traffic).toEqual([500_000, 2_000_000]);
    expect(await agent.stop()).toBe(0);
    expect(agent.logs().match(/configuration reloaded/g)?.length, 'three reloads').toBe(3);
    agent = undefined;

    const records = await userRecords();
    for (const u of [alice, bob]) {
      const now = bookedSince(0, u);
      const was = before.get(u.uid)!;
      expectRecordsEqualLedger(u, records, Object.fromEntries(CARRIED.map(([, c]) => [c, now[c] - was[c]])) as unknown as TrafficCounters);
    }
  });
});

/** A user's external-scope totals in the ledger since `fromMs` (zero before any). */
function bookedSince(fromMs: number, u: TestUser): TrafficCounters {
  const ledger = new Ledger(join(bed.dir, 'ledger.db'));
  const totals = ledger.totals(fromMs - 3_600_000, Date.now() + 60_000);
  ledger.close();
  return totals.find((t) => t.uid === u.uid && t.scope === 'external') ?? zeroCounters();
}

function expectRecordsEqualLedger(u: TestUser, records: Record<string, string>[], booked: TrafficCounters): void {
  const mine = records.filter((r) => Number(r.ubiaUserId) === u.uid);
  const sums = Object.fromEntries(CARRIED.map(([element, counter]) => [counter, mine.reduce((n, r) => n + Number(r[element]), 0)]));
  console.log(`${u.name}: ${mine.length} records`, CARRIED.map(([, c]) => `${c} ${sums[c]}/${booked[c]}`).join(', '));
  expect(sums, `${u.name}: records summed = ledger`).toEqual(Object.fromEntries(CARRIED.map(([, c]) => [c, booked[c]])));
}
