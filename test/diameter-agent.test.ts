// The whole chain on the real kernel: two test users send known traffic to a netns over
// veth; the real agent (dist/, eBPF meter) books it in its ledger and its Diameter
// exporter sends START, INTERIMs and, at SIGTERM, STOP to freeDiameter, whose app_acct
// stores them in PostgreSQL. The STOP's cumulative counters must equal the ledger's
// totals for each user, and `ubia status` must show the peer and the outbox.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Ledger } from '../src/ledger/ledger.js';
import type { StatusResult } from '../src/control/protocol.js';
import { RecordType } from '../src/export/diameter/dictionary.js';
import {
  cli,
  createNet,
  createUser,
  deleteUser,
  ensureBuilt,
  removeMeter,
  runTraffic,
  startAgent,
  startSink,
  tempDir,
  waitFor,
  type AgentProcess,
  type Sink,
  type TestNet,
  type TestUser,
} from './helpers/agent.js';
import { REALM, startFreeDiameter, startPostgres, type AcctRow, type FreeDiameter, type Postgres } from './peers/freediameter/harness.js';

let dir: string;
let pinDir: string;
let net: TestNet;
let sink: Sink;
let alice: TestUser;
let bob: TestUser;
let pg: Postgres;
let fd: FreeDiameter;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  ensureBuilt();
  pg = await startPostgres();
  fd = await startFreeDiameter({ pg, dumpMessages: true });
  dir = tempDir('ubia-diam-e2e-');
  pinDir = `/sys/fs/bpf/ubia-test-diam-${process.pid}`;
  net = createNet();
  alice = createUser();
  bob = createUser();
  sink = await startSink(net, dir, 9000);
});

afterAll(async () => {
  await agent?.kill();
  sink?.stop();
  net?.remove();
  if (alice) deleteUser(alice);
  if (bob) deleteUser(bob);
  await removeMeter(pinDir);
  await fd?.close();
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ORIGIN_HOST = `agent.${REALM}`;

function status(): StatusResult {
  const r = cli(agent!.socket, ['status', '--json']);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as StatusResult;
}

describe('real agent → Diameter → freeDiameter/app_acct → PostgreSQL', () => {
  it('two users\' real traffic: START, INTERIMs and STOP rows whose counters equal the ledger', async () => {
    agent = await startAgent({
      dir,
      pinDir,
      extra: `
[diameter]
origin_host = "${ORIGIN_HOST}"
origin_realm = "${REALM}"
destination_realm = "${REALM}"
interim_interval = 1
servers = [ { host = "127.0.0.1", port = ${fd.port} } ]
`,
    });
    onTestFailed(() => console.log(agent?.logs().slice(-4000), fd.log().slice(-3000)));
    await waitFor('the Diameter peer open in ubia status', () => {
      const d = status().exporters.find((e) => e.name === 'diameter');
      return d?.state === 'ok' ? d : undefined;
    });

    const t0 = Date.now();
    const [a, b] = await Promise.all([
      runTraffic(alice, dir, { host: net.peerV4, port: sink.port, send: 3_000_000, reply: 1_000_000, ms: 3000 }),
      runTraffic(bob, dir, { host: net.peerV6, port: sink.port, send: 200_000, reply: 5_000_000, ms: 3000 }),
    ]);
    expect([a, b]).toEqual([1_000_000, 5_000_000]);
    // both users' INTERIMs came while they were sending (1 s interval, 3 s of traffic)
    await waitFor('INTERIM rows for both users', () => {
      const users = new Set(pg.rows().filter((r) => r.recordType === RecordType.Interim).map((r) => r.userName));
      return users.has(alice.name) && users.has(bob.name) ? true : undefined;
    });
    const d = status().exporters.find((e) => e.name === 'diameter')!;
    const peers = d.extra!.peers as { name: string; state: string; remoteHost: string }[];
    expect(peers).toEqual([expect.objectContaining({ name: `127.0.0.1:${fd.port}`, state: 'open', remoteHost: 'aaa.test.local' })]);
    expect(d.extra).toEqual(expect.objectContaining({ outbox: expect.any(Number), sessions: expect.any(Number), rejected: 0 }));
    // the text view: each peer's state and the outbox depth
    const peer = `127\\.0\\.0\\.1:${fd.port}`;
    expect(cli(agent.socket, ['status']).stdout).toMatch(
      new RegExp(`diameter: ok — sending to ${peer}; peers: ${peer} open \\(aaa\\.test\\.local\\); outbox \\d+, in flight \\d+, sessions \\d+ \\(queued \\d+, dropped 0\\)`),
    );

    // SIGTERM: the agent's last poll, then a STOP for every session (ADMINISTRATIVE)
    expect(await agent.stop()).toBe(0);
    const t1 = Date.now();
    const ledger = new Ledger(join(dir, 'ledger.db'));
    const totals = ledger.totals(t0 - 60_000, t1 + 60_000);
    ledger.close();

    const rows = pg.rows();
    for (const u of [alice, bob]) {
      const mine = rows.filter((r) => r.userName === u.name).sort((x, y) => x.recordNumber - y.recordNumber);
      // one session: START, INTERIMs, STOP, numbered 0,1,2,… and stored once each
      expect(new Set(mine.map((r) => r.sessionId)).size).toBe(1);
      expect(mine[0]!.sessionId).toMatch(new RegExp(`^${ORIGIN_HOST.replace(/\./g, '\\.')};\\d+;\\d+;ubia-${u.uid}$`));
      expect(mine.map((r) => r.recordNumber)).toEqual(mine.map((_, i) => i));
      expect(mine.map((r) => r.recordType)).toEqual([RecordType.Start, ...mine.slice(1, -1).map(() => RecordType.Interim), RecordType.Stop]);
      expect(mine.length).toBeGreaterThanOrEqual(3);
      for (let i = 1; i < mine.length; i++) {
        expect(mine[i]!.inputOctets).toBeGreaterThanOrEqual(mine[i - 1]!.inputOctets);
        expect(mine[i]!.outputOctets).toBeGreaterThanOrEqual(mine[i - 1]!.outputOctets);
      }
      const stop = mine.at(-1)!;
      expect(stop.terminationCause).toBe(4);
      const booked = totals.filter((t) => t.uid === u.uid && t.scope === 'external');
      expect(booked).toHaveLength(1);
      const t = booked[0]!;
      // input = what the user sent (RFC 7155 §4.4.1), wire counts as the ledger keeps them
      expect(counters(stop)).toEqual({ inputOctets: t.txBytes, outputOctets: t.rxBytes, inputPackets: t.txPackets, outputPackets: t.rxPackets });
    }
    // what the test users sent and received is in there (payload plus headers)
    const stopOf = (u: TestUser): AcctRow => rows.filter((r) => r.userName === u.name).at(-1)!;
    expect(stopOf(alice).inputOctets).toBeGreaterThan(3_000_000);
    expect(stopOf(alice).outputOctets).toBeGreaterThan(1_000_000);
    expect(stopOf(bob).outputOctets).toBeGreaterThan(5_000_000);
    // no record went out twice
    const received = fd.receivedAcrs().filter((r) => r.sessionId.endsWith(`ubia-${alice.uid}`) || r.sessionId.endsWith(`ubia-${bob.uid}`));
    expect(received.length).toBe(rows.filter((r) => r.userName === alice.name || r.userName === bob.name).length);
    expect(received.some((r) => r.retransmit)).toBe(false);
  });
});

const counters = (r: AcctRow) => ({ inputOctets: r.inputOctets, outputOctets: r.outputOctets, inputPackets: r.inputPackets, outputPackets: r.outputPackets });
