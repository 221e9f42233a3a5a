// The whole chain on the real kernel: two test users send known traffic to a netns over
// veth; the real agent (dist/, eBPF meter) books it in its ledger and its Diameter
// exporter sends START, INTERIMs and, at SIGTERM, STOP to freeDiameter, whose app_acct
// stores them in PostgreSQL. The STOP's cumulative counters must equal the ledger's
// totals for each user, and `ubia status` must show the peer and the outbox. The same
// after a kill -9 of the agent in the middle of the traffic.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Ledger } from '../src/ledger/ledger.js';
import type { StatusResult } from '../src/control/protocol.js';
import { RecordType } from '../src/export/diameter/dictionary.js';
import { cli, startAgent, type AgentProcess } from './support/agent.js';
import { createTestbed, removeMeter, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { sleep, waitFor } from './support/wait.js';
import { REALM, startFreeDiameter, startPostgres, type AcctRow, type FreeDiameter, type Postgres } from './peers/freediameter/harness.js';
import { bySession, dedupeChecked, expectWellFormedSession } from './peers/freediameter/checks.js';

let bed: Testbed;
/** one per agent setup, so each test's agent starts from counters of its own */
const pinDirs: string[] = [];
let alice: TestUser;
let bob: TestUser;
let pg: Postgres;
let fd: FreeDiameter;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  pg = await startPostgres();
  fd = await startFreeDiameter({ pg, dumpMessages: true });
  bed = await createTestbed('diam', { users: 2, sinkPort: 9000 });
  [alice, bob] = bed.users as [TestUser, TestUser];
});

afterAll(async () => {
  await agent?.kill();
  for (const p of pinDirs) await removeMeter(p);
  await bed?.remove();
  await fd?.close();
  await pg?.stop();
});

const ORIGIN_HOST = `agent.${REALM}`;

/** An agent setup of its own (ledger, socket, pin dir) with Diameter to the test server. */
function agentSetup(name: string, interimS: number) {
  const sub = join(bed.dir, name);
  mkdirSync(sub, { mode: 0o755 });
  const pinDir = `${bed.pinDir}-${name}`;
  pinDirs.push(pinDir);
  return {
    dir: sub,
    pinDir,
    extra: `
[diameter]
origin_host = "${ORIGIN_HOST}"
origin_realm = "${REALM}"
destination_realm = "${REALM}"
interim_interval = ${interimS}
servers = [ { host = "127.0.0.1", port = ${fd.port} } ]
`,
  };
}

/** An empty accounting table, and an agent of its own whose Diameter peer is open. */
async function startWithDiameter(name: string, interimS = 1) {
  const setup = agentSetup(name, interimS);
  pg.sql('TRUNCATE incoming');
  const receivedBefore = fd.receivedAcrs().length;
  agent = await startAgent(setup);
  onTestFailed(() => console.log(agent?.logs().slice(-4000), fd.log().slice(-3000)));
  await waitPeerOpen();
  return { setup, receivedBefore };
}

const interimsOfBoth = () =>
  waitFor('INTERIM rows for both users', () => {
    const users = new Set(pg.rows().filter((r) => r.recordType === RecordType.Interim).map((r) => r.userName));
    return users.has(alice.name) && users.has(bob.name) ? true : undefined;
  });

const waitPeerOpen = () =>
  waitFor('the Diameter peer open in ubia status', () => {
    const d = status().exporters.find((e) => e.name === 'diameter');
    return d?.state === 'ok' ? d : undefined;
  });

/** Per test user: one accounting session (START, INTERIMs, STOP at shutdown), each record
 *  stored once (or again only when re-sent with T), and the STOP's counters equal to the
 *  ledger's totals for that user since the test began. */
function expectSessionsEqualLedger(ledgerPath: string, sinceMs: number, receivedBefore: number, minRecords = 3): Map<number, AcctRow> {
  const ledger = new Ledger(ledgerPath);
  const totals = ledger.totals(sinceMs - 60_000, Date.now() + 60_000);
  ledger.close();
  const mineOnly = (sessionId: string) => [alice, bob].some((u) => sessionId.endsWith(`;ubia-${u.uid}`));
  const received = fd.receivedAcrs().slice(receivedBefore).filter((r) => mineOnly(r.sessionId));
  const sessions = bySession(dedupeChecked(pg.rows().filter((r) => mineOnly(r.sessionId)), received));
  expect(sessions.size).toBe(2);
  const stops = new Map<number, AcctRow>();
  for (const u of [alice, bob]) {
    const [sessionId, rows] = [...sessions].find(([id]) => id.endsWith(`;ubia-${u.uid}`))!;
    expect(sessionId).toMatch(new RegExp(`^${ORIGIN_HOST.replace(/\./g, '\\.')};\\d+;\\d+;ubia-${u.uid}$`));
    expectWellFormedSession(rows);
    expect(rows.length).toBeGreaterThanOrEqual(minRecords);
    for (const r of rows) expect(r.userName).toBe(u.name);
    const stop = rows.at(-1)!;
    expect(stop.terminationCause).toBe(4); // ADMINISTRATIVE: the agent stopped
    const booked = totals.filter((t) => t.uid === u.uid && t.scope === 'external');
    expect(booked).toHaveLength(1);
    const t = booked[0]!;
    // input = what the user sent (RFC 7155 §4.4.1), wire counts as the ledger keeps them
    expect(counters(stop)).toEqual({ inputOctets: t.txBytes, outputOctets: t.rxBytes, inputPackets: t.txPackets, outputPackets: t.rxPackets });
    stops.set(u.uid, stop);
  }
  return stops;
}

function status(): StatusResult {
  const r = cli(agent!.socket, ['status', '--json']);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as StatusResult;
}

describe('real agent → Diameter → freeDiameter/app_acct → PostgreSQL', () => {
  it('two users\' real traffic: START, INTERIMs and STOP rows whose counters equal the ledger', async () => {
    const { setup, receivedBefore } = await startWithDiameter('clean');

    const t0 = Date.now();
    const [a, b] = await Promise.all([
      sinkTraffic(alice, { host: bed.net.peerV4, port: bed.sink.port, send: 3_000_000, reply: 1_000_000, ms: 3000 }),
      sinkTraffic(bob, { host: bed.net.peerV6, port: bed.sink.port, send: 200_000, reply: 5_000_000, ms: 3000 }),
    ]);
    expect([a, b]).toEqual([1_000_000, 5_000_000]);
    // both users' INTERIMs came while they were sending (1 s interval, 3 s of traffic)
    await interimsOfBoth();
    const d = status().exporters.find((e) => e.name === 'diameter')!;
    const peers = d.peers!;
    expect(peers).toEqual([expect.objectContaining({ name: `127.0.0.1:${fd.port}`, state: 'open', remoteHost: 'aaa.test.local' })]);
    expect(d.extra).toEqual(expect.objectContaining({ outbox: expect.any(Number), sessions: expect.any(Number), rejected: 0 }));
    // the text view: each peer's state and the outbox depth
    const peer = `127\\.0\\.0\\.1:${fd.port}`;
    expect(cli(agent!.socket, ['status']).stdout).toMatch(
      new RegExp(`diameter: ok — sending to ${peer}; peers: ${peer} open \\(aaa\\.test\\.local\\); outbox \\d+, in flight \\d+, sessions \\d+ \\(queued \\d+, dropped 0\\)`),
    );

    // SIGTERM: the agent's last poll, then a STOP for every session (ADMINISTRATIVE)
    expect(await agent!.stop()).toBe(0);
    const stops = expectSessionsEqualLedger(join(setup.dir, 'ledger.db'), t0, receivedBefore);
    // what the test users sent and received is in there (payload plus headers)
    expect(stops.get(alice.uid)!.inputOctets).toBeGreaterThan(3_000_000);
    expect(stops.get(alice.uid)!.outputOctets).toBeGreaterThan(1_000_000);
    expect(stops.get(bob.uid)!.outputOctets).toBeGreaterThan(5_000_000);
    // with the server up all along, no record was sent twice
    expect(fd.receivedAcrs().slice(receivedBefore).some((r) => r.retransmit)).toBe(false);
    await removeMeter(setup.pinDir); // the next agent attaches a meter of its own
  });

  it('kill -9 of the agent mid-traffic: the restarted agent continues the sessions, and the STOPs still equal the ledger', async () => {
    const { setup, receivedBefore } = await startWithDiameter('crash');

    const t0 = Date.now();
    const traffic = Promise.all([
      sinkTraffic(alice, { host: bed.net.peerV4, port: bed.sink.port, send: 4_000_000, reply: 2_000_000, ms: 5000 }),
      sinkTraffic(bob, { host: bed.net.peerV6, port: bed.sink.port, send: 300_000, reply: 6_000_000, ms: 5000 }),
    ]);
    await interimsOfBoth();
    // the ledger is flushed every second, the Diameter sessions at every 0.2 s poll: the
    // restarted agent hands over again what came after its last flush
    await agent!.kill();
    agent = await startAgent(setup);
    expect(await traffic).toEqual([2_000_000, 6_000_000]);
    await waitPeerOpen();
    await waitFor('the outbox sent', () => (status().exporters.find((e) => e.name === 'diameter')!.queued === 0 ? true : undefined));

    expect(await agent.stop()).toBe(0);
    const stops = expectSessionsEqualLedger(join(setup.dir, 'ledger.db'), t0, receivedBefore);
    expect(stops.get(alice.uid)!.inputOctets).toBeGreaterThan(4_000_000);
    expect(stops.get(bob.uid)!.outputOctets).toBeGreaterThan(6_000_000);
  });

  it('the ledger checkpoint and the sessions\' confirmed counts are one transaction: a kill -9 between the two steps cannot under-count', async () => {
    // no INTERIMs: between START and STOP a session's row is written only with the checkpoint
    const { setup, receivedBefore } = await startWithDiameter('one-transaction', 3600);
    const ledgerPath = join(setup.dir, 'ledger.db');
    const t0 = Date.now();
    const send = (u: TestUser, host: string) => sinkTraffic(u, { host, port: bed.sink.port, send: 500_000, reply: 500_000, ms: 1500 });
    await Promise.all([send(alice, bed.net.peerV4), send(bob, bed.net.peerV6)]);
    await waitFor('START rows for both users', () => {
      const users = new Set(pg.rows().filter((r) => r.recordType === RecordType.Start).map((r) => r.userName));
      return users.has(alice.name) && users.has(bob.name) ? true : undefined;
    });
    await sleep(1500); // flush_interval = 1: a checkpoint with the sessions as they are
    // From now on the Diameter step of every checkpoint fails (an SQLite trigger on the
    // delete it always makes), as if the agent were killed right after the ledger's part:
    // with two commits the ledger's checkpoint moves on while the sessions' counts stay
    // behind, and the deltas in between are never handed over again.
    const db = new Database(ledgerPath);
    db.exec(`INSERT INTO diameter_stopped_unconfirmed VALUES ('4294967294', 0, 0, 0, 0);
      CREATE TRIGGER test_confirm_fails BEFORE DELETE ON diameter_stopped_unconfirmed
      BEGIN SELECT RAISE(ABORT, 'test: the Diameter step of the checkpoint fails'); END`);
    await Promise.all([send(alice, bed.net.peerV4), send(bob, bed.net.peerV6)]);
    await sleep(2500); // at least two checkpoints with the trigger in place
    await agent!.kill();
    db.exec("DROP TRIGGER test_confirm_fails; DELETE FROM diameter_stopped_unconfirmed WHERE session_key = '4294967294'");
    db.close();

    agent = await startAgent(setup);
    await waitPeerOpen();
    await Promise.all([send(alice, bed.net.peerV4), send(bob, bed.net.peerV6)]);
    await sleep(1500);
    expect(await agent.stop()).toBe(0);
    expectSessionsEqualLedger(ledgerPath, t0, receivedBefore, 2);
    await removeMeter(setup.pinDir);
  });
});

const counters = (r: AcctRow) => ({ inputOctets: r.inputOctets, outputOctets: r.outputOctets, inputPackets: r.inputPackets, outputPackets: r.outputPackets });
