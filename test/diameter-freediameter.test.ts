// Diameter accounting against the real peer: freeDiameterd + app_acct storing every ACR in
// a throw-away PostgreSQL cluster (test/peers/freediameter/). Usage is driven with known
// synthetic deltas; the rows in PostgreSQL must match them exactly.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { createDiameterAccounting } from '../src/export/diameter/index.js';
import { RecordType } from '../src/export/diameter/dictionary.js';
import {
  CLIENT_HOST,
  CLIENT_IDENTITY,
  compileAgentChild,
  fakeLogind,
  memoryLogger,
  spawnAgentChild,
  tempLedger,
  testConfig,
  usage,
} from './peers/freediameter/client.js';
import {
  jobIdsReceived,
  makeTlsFiles,
  SERVER_IDENTITY,
  startFreeDiameter,
  startPostgres,
  type AcctRow,
  type FreeDiameter,
  type Postgres,
} from './peers/freediameter/harness.js';
import { sleep, waitFor } from './support/wait.js';
import { slurmCgroups } from './support/cgroups.js';
import { DEFAULT_WORKLOAD_RULES, workloadNamer, type Workload, type WorkloadUsage } from '../src/core/workload.js';
import { bySession, dedupeChecked, expectWellFormedSession } from './peers/freediameter/checks.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let pg: Postgres;
let fd: FreeDiameter;

beforeAll(async () => {
  pg = await startPostgres();
  fd = await startFreeDiameter({ pg, dumpMessages: true });
});

afterAll(async () => {
  await fd?.close();
  await pg?.stop();
});

type Totals = Record<string, { in: number; out: number; inP: number; outP: number }>;

/** Synthetic traffic for users, poll i; adds it to totals. */
function traffic(i: number, users: { uid: number; user: string }[], totals: Totals): Parameters<typeof usage>[2] {
  return users.map((u, k) => {
    const d = { ...u, txBytes: 1500 * (i + 1) + k, rxBytes: 64_000 + i * 7 + k, txPackets: i + 1 + k, rxPackets: 40 + i };
    const t = (totals[u.user] ??= { in: 0, out: 0, inP: 0, outP: 0 });
    t.in += d.txBytes;
    t.out += d.rxBytes;
    t.inP += d.txPackets;
    t.outP += d.rxPackets;
    return d;
  });
}

/** One user's deltas added up (the agent's delta since its checkpoint). */
function sumDeltas(ds: ReturnType<typeof traffic>): ReturnType<typeof traffic>[number] {
  return ds.reduce((a, d) => ({
    ...a,
    txBytes: a.txBytes! + d.txBytes!,
    rxBytes: a.rxBytes! + d.rxBytes!,
    txPackets: a.txPackets! + d.txPackets!,
    rxPackets: a.rxPackets! + d.rxPackets!,
  }));
}

function expectTotals(sessions: Map<string, AcctRow[]>, totals: Totals): void {
  expect(sessions.size).toBe(Object.keys(totals).length);
  for (const rows of sessions.values()) {
    expectWellFormedSession(rows);
    const stop = rows.at(-1)!;
    const t = totals[stop.userName]!;
    expect([stop.inputOctets, stop.outputOctets, stop.inputPackets, stop.outputPackets]).toEqual([t.in, t.out, t.inP, t.outP]);
  }
}


describe('Diameter accounting into freeDiameter/app_acct/PostgreSQL', () => {
  it('two users: START, INTERIMs and STOP rows with cumulative wire counts', async () => {
    pg.sql('TRUNCATE incoming');
    const ledger = tempLedger();
    const logind = fakeLogind();
    logind.set(60001, 'lingering'); // alice: no login session, only lingering services
    logind.set(60002, 'active'); // bob is logged in
    const { logger, lines } = memoryLogger();
    onTestFailed(() => console.log(lines.map((l) => JSON.stringify(l)).join('\n'), fd.log().slice(-3000)));
    const acct = createDiameterAccounting(testConfig(fd.port, { interim_interval: 1, idle_timeout: 3 }), {
      logger,
      db: ledger.db,
      hostName: CLIENT_HOST,
      loginStateDir: logind.dir,
    });
    try {
      await waitFor('peer open', () => acct.status().state === 'ok', 10_000);
      const totals = { alice: { in: 0, out: 0, inP: 0, outP: 0 }, bob: { in: 0, out: 0, inP: 0, outP: 0 } };
      const t0 = Date.now();
      // 6 polls of 500 ms: alice sends and receives every poll, bob only in the first half
      for (let i = 0; i < 6; i++) {
        const users = [{ uid: 60001, user: 'alice', txBytes: 1000 + i, rxBytes: 20_000 * (i + 1), txPackets: 10 + i, rxPackets: 15 + i }];
        if (i < 3) users.push({ uid: 60002, user: 'bob', txBytes: 3_000_000_000 * (i + 1), rxBytes: 7, txPackets: 2_000_000 + i, rxPackets: 1 });
        for (const u of users) {
          const t = totals[u.user as 'alice' | 'bob'];
          t.in += u.txBytes;
          t.out += u.rxBytes;
          t.inP += u.txPackets;
          t.outP += u.rxPackets;
        }
        acct.usage(usage(t0 + i * 500, t0 + (i + 1) * 500, users));
        await sleep(500);
      }
      logind.set(60002, undefined); // bob's last login session ended: logind removes his file
      // alice goes idle: her STOP comes after idleStopSeconds
      await waitFor('both STOP rows', () => pg.rows().filter((r) => r.recordType === RecordType.Stop).length === 2, 15_000);
      await waitFor('outbox empty', () => acct.status().queued === 0, 5000);

      const sessions = bySession(pg.rows());
      expect(sessions.size).toBe(2);
      for (const [sessionId, rows] of sessions) {
        expectWellFormedSession(rows);
        const user = rows[0]!.userName as 'alice' | 'bob';
        expect(sessionId).toMatch(new RegExp(`^${CLIENT_IDENTITY.replace(/\./g, '\\.')};\\d+;\\d+;ubia-6000[12]$`));
        for (const r of rows) {
          expect(r.userName).toBe(user);
          expect(r.originHost).toBe(CLIENT_IDENTITY);
          expect(r.nasIdentifier).toBe(CLIENT_HOST);
        }
        const stop = rows.at(-1)!;
        const t = totals[user];
        expect([stop.inputOctets, stop.outputOctets, stop.inputPackets, stop.outputPackets]).toEqual([t.in, t.out, t.inP, t.outP]);
        expect(stop.terminationCause).toBe(user === 'bob' ? 1 : 8); // LOGOUT, SESSION_TIMEOUT
        expect(stop.sessionTime).toBeGreaterThanOrEqual(1);
      }
      // alice was active ~3 s with a 1 s interim interval: some INTERIMs
      const alice = [...sessions.values()].find((r) => r[0]!.userName === 'alice')!;
      expect(alice.filter((r) => r.recordType === RecordType.Interim).length).toBeGreaterThanOrEqual(2);
      // bob's counts pass 2^32 octets: Unsigned64 end to end
      expect(totals.bob.in).toBeGreaterThan(2 ** 32);
      expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    } finally {
      await acct.close();
      ledger.dispose();
      logind.dispose();
    }
  });

  it('server stopped (SIGTERM) and killed (SIGKILL) during traffic: every record arrives, none duplicated without T', async () => {
    pg.sql('TRUNCATE incoming');
    const receivedBefore = fd.receivedAcrs().length;
    const ledger = tempLedger();
    const { logger, lines } = memoryLogger();
    onTestFailed(() => console.log(lines.map((l) => JSON.stringify(l)).join('\n'), fd.log().slice(-3000)));
    const acct = createDiameterAccounting(
      testConfig(fd.port, { interim_interval: 1, request_timeout: 2, reconnect_interval: 1, watchdog_interval: 2 }),
      { logger, db: ledger.db, hostName: CLIENT_HOST },
    );
    const users = [{ uid: 61001, user: 'carol' }, { uid: 61002, user: 'dave' }, { uid: 61003, user: 'erin' }];
    const totals: Totals = {};
    try {
      await waitFor('peer open', () => acct.status().state === 'ok', 10_000);
      const t0 = Date.now();
      let queuedWhileDown = 0;
      for (let i = 0; i < 30; i++) {
        if (i === 5) await fd.stop();
        if (i === 12) await fd.start();
        if (i === 18) await fd.stop(true);
        if (i === 23) await fd.start();
        acct.usage(usage(t0 + i * 200, t0 + (i + 1) * 200, traffic(i, users, totals)));
        if (i === 11 || i === 22) {
          expect(acct.status().state).toBe('down');
          queuedWhileDown = Math.max(queuedWhileDown, acct.status().queued);
        }
        await sleep(200);
      }
      expect(queuedWhileDown).toBeGreaterThan(0); // records waited in the outbox
      await waitFor('outbox empty', () => acct.status().queued === 0, 20_000);
      await acct.close(); // STOPs
      expect(acct.status().queued).toBe(0);
      const rows = dedupeChecked(pg.rows(), fd.receivedAcrs().slice(receivedBefore));
      expectTotals(bySession(rows), totals);
      expect(lines.some((l) => /peer connection lost/.test(l.msg))).toBe(true);
    } finally {
      await acct.close();
      ledger.dispose();
    }
  });

  it('kill -9 of the agent with records in the outbox: a restart re-sends them, continues the sessions and counts nothing twice', async () => {
    pg.sql('TRUNCATE incoming');
    const receivedBefore = fd.receivedAcrs().length;
    const ledger = tempLedger();
    ledger.db.close(); // the child processes own it
    const child = compileAgentChild();
    const config = testConfig(fd.port, { interim_interval: 1, request_timeout: 2, reconnect_interval: 1 });
    const users = [{ uid: 62001, user: 'frank' }, { uid: 62002, user: 'grace' }];
    const totals: Totals = {};
    let agent = spawnAgentChild(child.script, ledger.path, config, CLIENT_HOST);
    onTestFailed(() => console.log(agent.stderr(), fd.log().slice(-3000)));
    try {
      const t0 = Date.now();
      let i = 0;
      // As the agent does: a checkpoint every third poll; after a crash it resumes from the
      // last one, so its first poll hands over again what was handed over since then.
      let unsaved: ReturnType<typeof traffic> = [];
      let redeliver = false;
      const poll = async (): Promise<void> => {
        const fresh = traffic(i, users, totals);
        const deltas = redeliver ? fresh.map((d) => sumDeltas([d, ...unsaved.filter((u) => u.uid === d.uid)])) : fresh;
        redeliver = false;
        unsaved.push(...fresh);
        agent.usage(usage(t0 + i * 200, t0 + (i + 1) * 200, deltas));
        if (i % 3 === 2) {
          agent.checkpointed();
          unsaved = [];
        }
        i++;
        await sleep(200);
      };
      const crash = async (): Promise<void> => {
        expect(unsaved.length).toBeGreaterThan(0); // some deltas are not checkpointed yet
        await agent.kill9();
        redeliver = true;
      };
      const drained = async (): Promise<void> => {
        const deadline = Date.now() + 20_000;
        while ((await agent.status()).queued > 0) {
          if (Date.now() > deadline) throw new Error('outbox not drained in 20 s');
          await sleep(100);
        }
      };
      for (let n = 0; n < 5; n++) await poll();
      await waitFor('first rows', () => pg.rows().length >= 2, 10_000);
      // 1. server down: INTERIMs pile up in the outbox, unsent; then the agent dies
      await fd.stop();
      for (let n = 0; n < 8; n++) await poll();
      expect((await agent.status()).queued).toBeGreaterThan(0);
      await crash();
      await fd.start();
      agent = spawnAgentChild(child.script, ledger.path, config, CLIENT_HOST);
      for (let n = 0; n < 5; n++) await poll();
      await drained();
      // 2. server silent: ACRs sent and unanswered when the agent dies; the server stores
      //    them later, and the restarted agent must re-send them with the T flag
      fd.pause();
      for (let n = 0; n < 8; n++) await poll();
      expect((await agent.status()).extra!.inFlight).toBeGreaterThan(0);
      await crash();
      fd.resume();
      agent = spawnAgentChild(child.script, ledger.path, config, CLIENT_HOST);
      for (let n = 0; n < 5; n++) await poll();
      await drained();
      await agent.close();
      const received = fd.receivedAcrs().slice(receivedBefore);
      expect(received.some((r) => r.retransmit)).toBe(true);
      const rows = dedupeChecked(pg.rows(), received);
      const sessions = bySession(rows);
      expect(sessions.size).toBe(2); // same Session-Ids across the restart
      expectTotals(sessions, totals);
    } finally {
      fd.resume();
      await agent.kill9();
      child.dispose();
      ledger.dispose();
    }
  });

  it('session_per = "job": one session per Slurm job with the job id, STOP when its cgroup goes, carried across an agent restart', async () => {
    pg.sql('TRUNCATE incoming');
    const ledger = tempLedger();
    const slurm = slurmCgroups(`ubia-diameter-jobs-${process.pid}`);
    const { logger, lines } = memoryLogger();
    onTestFailed(() => console.log(lines.map((l) => JSON.stringify(l)).join('\n'), fd.log().slice(-3000)));
    const config = testConfig(fd.port, { interim_interval: 1, idle_timeout: 300, session_per: 'job' });
    const open = () => createDiameterAccounting(config, { logger, db: ledger.db, hostName: CLIENT_HOST });
    let acct = open();
    try {
      // alice (60001) runs job 4101 (steps 0 and batch) and job 4102 at once, and some
      // traffic outside any job (her login shell)
      const steps = { a0: slurm.step(4101, '0'), aBatch: slurm.step(4101, 'batch'), b0: slurm.step(4102, '0') };
      const workloadOf = workloadNamer(DEFAULT_WORKLOAD_RULES);
      const totals: Record<string, [number, number, number, number]> = { 4101: [0, 0, 0, 0], 4102: [0, 0, 0, 0], outside: [0, 0, 0, 0] };
      const part = (key: string, tx: number, rx: number, txP: number, rxP: number) => {
        const t = totals[key]!;
        t[0] += tx; t[1] += rx; t[2] += txP; t[3] += rxP;
        return { txBytes: tx, rxBytes: rx, txPackets: txP, rxPackets: rxP, rxPayloadBytes: 0, txPayloadBytes: 0 };
      };
      const poll = (i: number, withJobA: boolean, endedWorkloads: Workload[] = []) => {
        const workloads: WorkloadUsage[] = [];
        const unit = (cgroupPath: string, d: ReturnType<typeof part>) => workloads.push({ uid: 60001, user: 'alice', workload: workloadOf(cgroupPath), ...d });
        if (withJobA) {
          unit(steps.a0.path, part('4101', 1000 + i, 50_000 + i, 10 + i, 40 + i));
          unit(steps.aBatch.path, part('4101', 7, 9, 1, 1));
        }
        unit(steps.b0.path, part('4102', 200_000_000 * (i + 1), 300, 150_000, 5));
        // her login shell's traffic is a workload too: a user's workloads add up to the user
        unit('/user.slice/user-60001.slice/session-3.scope', part('outside', 111, 222, 3, 4));
        const user = { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 };
        for (const u of workloads) for (const c of ['txBytes', 'rxBytes', 'txPackets', 'rxPackets'] as const) user[c] += u[c];
        const now = Date.now();
        acct.usage({ ...usage(now - 500, now, [{ uid: 60001, user: 'alice', ...user }]), workloads, endedWorkloads });
      };

      await waitFor('peer open', () => acct.status().state === 'ok', 10_000);
      for (let i = 0; i < 3; i++) {
        poll(i, true);
        await sleep(500);
      }
      // the agent restarts: alice's user session STOPs, her jobs' sessions carry on
      await acct.close();
      acct = open();
      await waitFor('peer open again', () => acct.status().state === 'ok', 10_000);
      for (let i = 3; i < 5; i++) {
        poll(i, true);
        await sleep(500);
      }
      // job 4101 ends: Slurm removes its cgroup, and the agent's next poll hands over its
      // last bytes and names its workloads ended (as src/agent does): the STOP goes with them
      const endedAt = Date.now();
      slurm.endJob(4101);
      poll(5, false, [workloadOf(steps.a0.path), workloadOf(steps.aBatch.path)]);
      const jobStops = () => pg.rows().filter((r) => r.recordType === RecordType.Stop && r.sessionId.includes('-job-'));
      await waitFor('the STOP of job 4101', () => jobStops().length === 1, 5000);
      const stopLatency = Date.now() - endedAt;
      await sleep(500);
      poll(6, false);
      // job 4102 ends without the agent saying so (as when it ended while no agent ran):
      // its cgroup gone for 5 s STOPs it
      slurm.endJob(4102);
      await waitFor('the STOP of job 4102', () => jobStops().length === 2, 10_000);
      await acct.close();
      // the STOPs of both jobs and of alice's two user sessions (one per agent run)
      await waitFor('every STOP stored', () => pg.rows().filter((r) => r.recordType === RecordType.Stop).length === 4, 5000);

      const sessions = bySession(dedupeChecked(pg.rows(), fd.receivedAcrs()));
      const jobSession = (job: string) => [...sessions].find(([id]) => id.endsWith(`;ubia-60001-job-${job}`));
      // one session per job, each START … STOP with its exact sums, the STOP a job's end (LOGOUT)
      for (const job of ['4101', '4102']) {
        const [sessionId, rows] = jobSession(job)!;
        expectWellFormedSession(rows);
        expect(rows.filter((r) => r.recordType === RecordType.Interim).length).toBeGreaterThanOrEqual(2);
        expect(sessionId).toMatch(new RegExp(`^${CLIENT_IDENTITY.replace(/\./g, '\\.')};\\d+;\\d+;ubia-60001-job-${job}$`));
        for (const r of rows) expect(r.userName).toBe('alice');
        const stop = rows.at(-1)!;
        expect([stop.inputOctets, stop.outputOctets, stop.inputPackets, stop.outputPackets]).toEqual(totals[job]);
        expect(stop.terminationCause).toBe(1);
      }
      expect(stopLatency).toBeLessThan(1000);
      // job 4102 went past 2^32 octets: Unsigned64 end to end
      expect(totals['4102']![0]).toBeGreaterThan(2 ** 32);
      // the traffic outside jobs: one user session per agent run, ADMINISTRATIVE STOP at each close
      const userSessions = [...sessions].filter(([id]) => id.endsWith(';ubia-60001')).map(([, rows]) => rows);
      expect(userSessions).toHaveLength(2);
      for (const rows of userSessions) {
        expectWellFormedSession(rows);
        expect(rows.at(-1)!.terminationCause).toBe(4);
      }
      const outside = userSessions.map((rows) => rows.at(-1)!).reduce(
        (a, r) => [a[0]! + r.inputOctets, a[1]! + r.outputOctets, a[2]! + r.inputPackets, a[3]! + r.outputPackets], [0, 0, 0, 0]);
      expect(outside).toEqual(totals.outside);
      expect(sessions.size).toBe(4);
      // every record of a job's session names its job in Ubia-Job-Id (vendor 32473, code 1,
      // M bit clear), as freeDiameter received it
      for (const job of ['4101', '4102']) {
        const [sessionId, rows] = jobSession(job)!;
        expect(jobIdsReceived(fd.log(), sessionId)).toEqual(rows.map(() => job));
      }
      expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    } finally {
      await acct.close();
      ledger.dispose();
      slurm.dispose();
    }
  });

  it('1,000 ACRs pipelined at once are all answered', async () => {
    pg.sql('TRUNCATE incoming');
    const ledger = tempLedger();
    const { logger } = memoryLogger();
    const acct = createDiameterAccounting(testConfig(fd.port, { max_in_flight: 1000 }), { logger, db: ledger.db, hostName: CLIENT_HOST });
    try {
      await waitFor('peer open', () => acct.status().state === 'ok', 10_000);
      const now = Date.now();
      const users = Array.from({ length: 1000 }, (_, k) => ({ uid: 70000 + k, user: `u${k}`, txBytes: k + 1, rxBytes: 2 * k + 1, txPackets: 1, rxPackets: 1 }));
      acct.usage(usage(now - 1000, now, users));
      await new Promise((r) => setImmediate(r));
      expect(acct.status().extra!.inFlight).toBe(1000); // all sent before any answer was read
      await waitFor('1,000 ACAs', () => acct.status().queued === 0, 30_000);
      const rows = pg.rows();
      expect(rows.length).toBe(1000);
      expect(new Set(rows.map((r) => r.userName)).size).toBe(1000);
      expect(rows.every((r) => r.recordType === RecordType.Start && r.inputOctets === Number(r.userName.slice(1)) + 1)).toBe(true);
    } finally {
      await acct.close();
      ledger.dispose();
    }
  });
});

describe('Diameter over TLS (RFC 6733 §13) to freeDiameter', () => {
  it('connects with a client certificate from a test CA and stores the records; a wrong CA is refused', async () => {
    pg.sql('TRUNCATE incoming');
    const dir = mkdtempSync(join(tmpdir(), 'ubia-diam-tls-'));
    const files = makeTlsFiles(dir, CLIENT_IDENTITY);
    const fdTls = await startFreeDiameter({ pg, tls: files });
    const ledger = tempLedger();
    const { logger, lines } = memoryLogger();
    onTestFailed(() => console.log(lines.map((l) => JSON.stringify(l)).join('\n'), fdTls.log().slice(-3000)));
    const tlsConfig = (ca: string) =>
      testConfig(fdTls.tlsPort!, {
        servers: [{ host: '127.0.0.1', port: fdTls.tlsPort!, transport: 'tls', identity: SERVER_IDENTITY }],
        tls: { ca, cert: files.clientCert, key: files.clientKey, server_name: SERVER_IDENTITY },
      });
    const acct = createDiameterAccounting(tlsConfig(files.ca), { logger, db: ledger.db, hostName: CLIENT_HOST });
    const wrongCa = makeTlsFiles(mkdtempSync(join(dir, 'other-')), CLIENT_IDENTITY).ca;
    const ledger2 = tempLedger();
    const refused = createDiameterAccounting(tlsConfig(wrongCa), { logger, db: ledger2.db, hostName: CLIENT_HOST });
    try {
      await waitFor('TLS peer open', () => acct.status().state === 'ok', 15_000);
      const now = Date.now();
      acct.usage(usage(now - 1000, now, [{ uid: 63001, user: 'heidi', txBytes: 123, rxBytes: 456, txPackets: 3, rxPackets: 4 }]));
      await waitFor('START row', () => pg.rows().length === 1, 10_000);
      await acct.close(); // the STOP at shutdown, then DPR/DPA
      const rows = pg.rows().sort((a, b) => a.recordNumber - b.recordNumber);
      expect(rows.map((r) => [r.userName, r.recordType, r.inputOctets, r.outputOctets, r.terminationCause])).toEqual([
        ['heidi', RecordType.Start, 123, 456, null],
        ['heidi', RecordType.Stop, 123, 456, 4], // ADMINISTRATIVE (RFC 6733 §8.15)
      ]);
      const lastError = (): string => String(refused.status().peers![0]!.lastError);
      await waitFor('the wrong-CA client to fail', () => lastError() !== 'undefined', 10_000);
      expect(refused.status().state).toBe('down');
      expect(lastError()).toMatch(/certificate/i);
    } finally {
      await refused.close();
      await acct.close();
      await fdTls.close();
      ledger.dispose();
      ledger2.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
