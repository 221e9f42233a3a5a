// Sessions over a real SQLite ledger, across simulated crashes: the agent hands over again
// what came after its last checkpoint, and no session, nor a user's next one, counts it
// twice. The ACRs are read back from the outbox as they would be sent.
import { afterEach, describe, expect, it } from 'vitest';
import { createIdSequence, decodeMessage, findAvp, readU32 } from '../src/export/diameter/codec.js';
import { Avp, RecordType } from '../src/export/diameter/dictionary.js';
import { openDiameterOutbox, type DiameterOutbox } from '../src/export/diameter/outbox.js';
import { createSessions, jobCgroupOf, type SessionSettings, type Sessions } from '../src/export/diameter/sessions.js';
import { tempLedger, usage } from './peers/freediameter/client.js';

const disposers: (() => void)[] = [];
afterEach(() => disposers.splice(0).forEach((d) => d()));

/** A ledger database, and sessions over it that can be "restarted" as after a kill -9. */
function setup(settings: Partial<SessionSettings> = {}, db = tempLedger()): { ledger: DiameterOutbox; start(): Sessions } {
  disposers.push(db.dispose);
  const ledger = openDiameterOutbox(db.db);
  const start = (): Sessions =>
    createSessions(
      ledger,
      {
        originHost: 'agent.test.local', originRealm: 'test.local', destinationRealm: 'test.local', nasIdentifier: 'agent',
        interimIntervalS: 300, idleStopS: 900, sessionPer: 'user', vendorId: 32473, jobGone: () => false, ...settings,
      },
      createIdSequence(),
      () => undefined,
    );
  return { ledger, start };
}

let clock = Date.UTC(2026, 10, 23, 12, 0, 0);
/** One poll: uid → [sent bytes, received bytes, sent packets, received packets]. */
function poll(sessions: Sessions, deltas: Record<number, [number, number, number, number]>): void {
  clock += 1000;
  sessions.addUsage(
    usage(clock - 1000, clock, Object.entries(deltas).map(([uid, [tx, rx, txp, rxp]]) => ({ uid: Number(uid), user: `u${uid}`, txBytes: tx, rxBytes: rx, txPackets: txp, rxPackets: rxp }))),
  );
}

/** The ACRs in the outbox: type, Session-Id and the four counters (input, output octets; input, output packets). */
function records(ledger: DiameterOutbox) {
  return ledger.readOutbox(0, 1000).map((r) => {
    const m = decodeMessage(r.message);
    const u64 = (code: number) => Number(findAvp(m.avps, code)!.data.readBigUInt64BE());
    return {
      type: readU32(findAvp(m.avps, Avp.AccountingRecordType)!),
      sessionId: r.sessionId,
      counts: [u64(Avp.AccountingInputOctets), u64(Avp.AccountingOutputOctets), u64(Avp.AccountingInputPackets), u64(Avp.AccountingOutputPackets)],
    };
  });
}

describe('accounting sessions across agent crashes', () => {
  it('a session continued after a crash absorbs the re-delivered deltas; after a checkpoint nothing is absorbed', () => {
    const { ledger, start } = setup();
    let sessions = start();
    poll(sessions, { 1000: [100, 1000, 1, 2] }); // START
    sessions.confirmed(); // the agent saved its checkpoint
    poll(sessions, { 1000: [30, 300, 3, 4] }); // counted, not yet checkpointed
    // kill -9; the agent resumes from its checkpoint: 30/300/3/4 come again, with 5/50/1/1 new
    sessions = start();
    poll(sessions, { 1000: [35, 350, 4, 5] });
    sessions.confirmed();
    sessions = start(); // a crash right after a checkpoint: nothing to absorb
    poll(sessions, { 1000: [1, 2, 1, 1] });
    sessions.stopAll(clock);
    const recs = records(ledger);
    expect(recs.map((r) => r.type)).toEqual([RecordType.Start, RecordType.Stop]);
    expect(new Set(recs.map((r) => r.sessionId)).size).toBe(1);
    expect(recs.at(-1)!.counts).toEqual([100 + 30 + 5 + 1, 1000 + 300 + 50 + 2, 1 + 3 + 1 + 1, 2 + 4 + 1 + 1]);
  });

  it('a checkpoint whose transaction is rolled back changes nothing, in the database or in memory', () => {
    const { ledger, start } = setup();
    let sessions = start();
    poll(sessions, { 3000: [100, 1000, 1, 2] }); // START
    sessions.confirmed();
    poll(sessions, { 3000: [30, 300, 3, 4] }); // counted since the checkpoint
    // the agent's flush fails (a full disk at commit): its transaction, Diameter's part
    // included, is rolled back, and the step for memory never runs
    expect(() =>
      ledger.transaction(() => {
        sessions.saveConfirmed();
        throw new Error('test: the ledger commit fails');
      }),
    ).toThrow('test: the ledger commit fails');
    // the next flush succeeds (no traffic in between): the session's row must be written
    // with its counts, though no poll marked it again
    sessions.confirmed();
    sessions = start(); // kill -9 right after it: nothing to hand over again
    poll(sessions, { 3000: [1, 1, 1, 1] });
    sessions.stopAll(clock);
    expect(records(ledger).at(-1)!.counts).toEqual([100 + 30 + 1, 1000 + 300 + 1, 1 + 3 + 1, 2 + 4 + 1]);
  });

  it('a session stopped (logout) after the checkpoint leaves its unconfirmed part to the user\'s next session, also across two crashes', () => {
    const { ledger, start } = setup();
    let sessions = start();
    poll(sessions, { 2000: [10, 20, 1, 1] });
    sessions.confirmed();
    poll(sessions, { 2000: [7, 8, 1, 1] });
    sessions.stopUser(2000, clock); // STOP: 17/28/2/2
    // kill -9: 7/8/1/1 come again, with 3/4/1/1 new: the new session counts only those
    sessions = start();
    poll(sessions, { 2000: [10, 12, 2, 2] });
    // killed again before a checkpoint: everything since it comes once more, plus 1/1/1/1
    sessions = start();
    poll(sessions, { 2000: [11, 13, 3, 3] });
    sessions.stopAll(clock);
    const recs = records(ledger);
    expect(recs.map((r) => r.type)).toEqual([RecordType.Start, RecordType.Stop, RecordType.Start, RecordType.Stop]);
    expect(recs[1]!.counts).toEqual([17, 28, 2, 2]);
    expect(recs[2]!.counts).toEqual([3, 4, 1, 1]);
    expect(recs[3]!.counts).toEqual([4, 5, 2, 2]);
  });
});

describe('sessions per job (session_per = "job")', () => {
  const step = (jobId: string, step: string) => `/system.slice/slurmstepd.scope/job_${jobId}/step_${step}`;
  /** One poll of user 1000: per unit [cgroup path, job id or undefined, tx, rx, txp, rxp]; the user's delta is their sum
   *  unless `moved` says what the user's counters moved (the agent books that over workloads up to a settle later). */
  function pollUnits(sessions: Sessions, units: [string, string | undefined, number, number, number, number][], endedJobs: string[] = [], moved?: number[]): void {
    clock += 1000;
    const unitUsage = units.map(([path, jobId, tx, rx, txp, rxp]) => ({
      uid: 1000, user: 'u1000', txBytes: tx, rxBytes: rx, txPackets: txp, rxPackets: rxp, rxPayloadBytes: 0, txPayloadBytes: 0,
      workload: { kind: jobId ? 'step' as const : 'scope' as const, name: path, jobId, cgroupPath: path, cgroupId: 1n },
    }));
    const [txBytes, rxBytes, txPackets, rxPackets] = moved ?? (['txBytes', 'rxBytes', 'txPackets', 'rxPackets'] as const).map((k) => unitUsage.reduce((n, u) => n + u[k], 0));
    sessions.addUsage({
      ...usage(clock - 1000, clock, txBytes || rxBytes ? [{ uid: 1000, user: 'u1000', txBytes: txBytes!, rxBytes: rxBytes!, txPackets: txPackets!, rxPackets: rxPackets! }] : []),
      workloads: unitUsage,
      endedWorkloads: endedJobs.map((job) => ({ kind: 'step' as const, name: `job_${job}/step_0`, jobId: job, cgroupPath: step(job, '0') })),
    });
  }

  it('finds the job\'s own cgroup in a step\'s or task\'s path', () => {
    expect(jobCgroupOf('/system.slice/slurmstepd.scope/job_1234/step_0', '1234')).toBe('/system.slice/slurmstepd.scope/job_1234');
    expect(jobCgroupOf('/system.slice/slurmstepd.scope/job_1234/step_batch/user/task_0', '1234')).toBe('/system.slice/slurmstepd.scope/job_1234');
    // "user@1234.service" ends in the id only after a letter: not the job's directory
    expect(jobCgroupOf('/user.slice/user@1234.service/job_1234', '1234')).toBe('/user.slice/user@1234.service/job_1234');
    expect(jobCgroupOf('/batch/77', '77')).toBe('/batch/77');
    expect(jobCgroupOf('/elsewhere/x', '5')).toBe('/elsewhere/x');
  });

  it('one session per job and one for the rest of the user\'s traffic; the job id in a vendor AVP; STOP when the cgroup is gone', () => {
    const gone = new Set<string>();
    const { ledger, start } = setup({ sessionPer: 'job', jobGone: (c) => gone.has(c) });
    let sessions = start();
    pollUnits(sessions, [[step('7', '0'), '7', 100, 200, 1, 2], [step('7', 'batch'), '7', 5, 6, 1, 1], [step('8', '0'), '8', 1000, 2000, 10, 20], ['/user.slice/session-3.scope', undefined, 1, 2, 1, 1]]);
    sessions.confirmed();
    pollUnits(sessions, [[step('7', '0'), '7', 10, 20, 1, 1], [step('8', '0'), '8', 1, 1, 1, 1]]);
    // kill -9 before a checkpoint: the last poll comes again (plus 3/3/1/1 new in job 8)
    sessions = start();
    pollUnits(sessions, [[step('7', '0'), '7', 10, 20, 1, 1], [step('8', '0'), '8', 4, 4, 2, 2]]);
    gone.add('/system.slice/slurmstepd.scope/job_7'); // job 7 ends: its cgroup goes …
    sessions.tick(clock); // … and its last bytes are still to come: no STOP yet
    expect(records(ledger).filter((r) => r.type === RecordType.Stop)).toEqual([]);
    // the agent hands them over and says the job's workloads ended: STOP with them
    pollUnits(sessions, [[step('7', '0'), '7', 0, 1, 0, 1]], ['7']);
    // an agent restart: the user's session STOPs, job 8's carries on
    sessions.confirmed();
    sessions.stopAll(clock);
    sessions = start();
    pollUnits(sessions, [[step('8', '0'), '8', 1, 1, 1, 1]]);
    // job 8 ends while the agent does not report it (say it ended while no agent ran): its
    // cgroup gone for 5 s is enough
    gone.add('/system.slice/slurmstepd.scope/job_8');
    sessions.tick(clock);
    sessions.tick(clock + 4999);
    expect(records(ledger).filter((r) => r.sessionId.endsWith('-job-8') && r.type === RecordType.Stop)).toEqual([]);
    sessions.tick(clock + 5000);
    const recs = records(ledger);
    const of = (suffix: string) => recs.filter((r) => r.sessionId.endsWith(suffix));
    const job7 = of(';ubia-1000-job-7');
    const job8 = of(';ubia-1000-job-8');
    const user = of(';ubia-1000');
    expect(job7.map((r) => r.type)).toEqual([RecordType.Start, RecordType.Stop]);
    expect(job7.at(-1)!.counts).toEqual([115, 227, 3, 5]);
    expect(job8.map((r) => r.type)).toEqual([RecordType.Start, RecordType.Stop]);
    expect(new Set(job8.map((r) => r.sessionId)).size).toBe(1);
    expect(job8.at(-1)!.counts).toEqual([1000 + 4 + 1, 2000 + 4 + 1, 10 + 2 + 1, 20 + 2 + 1]);
    expect(user.map((r) => r.type)).toEqual([RecordType.Start, RecordType.Stop]);
    expect(user.at(-1)!.counts).toEqual([1, 2, 1, 1]);
    expect(recs).toHaveLength(6);

    // Ubia-Job-Id: code 1, V bit only (not mandatory), length 12 + 1, Vendor-Id 32473, "7", padded
    const stop7 = ledger.readOutbox(0, 100).find((r) => r.sessionId.endsWith('-job-7') && r.recordType === RecordType.Stop)!.message;
    expect(stop7.subarray(-16).toString('hex')).toBe('00000001' + '80' + '00000d' + '00007ed9' + '37' + '000000');
    const userStart = ledger.readOutbox(0, 100).find((r) => r.sessionId.endsWith(';ubia-1000'))!.message;
    expect(decodeMessage(userStart).avps.some((a) => a.vendorId !== 0)).toBe(false);
  });

  it('a job\'s share booked a settle after the user\'s delta: the user\'s session keeps only the traffic outside jobs', () => {
    const { ledger, start } = setup({ sessionPer: 'job', jobGone: () => true });
    const sessions = start();
    const shell = '/user.slice/session-3.scope';
    // the user moved 1000/2000/10/20: 900/1800/9/18 found job 7's process at once, the rest a poll later
    pollUnits(sessions, [[step('7', '0'), '7', 900, 1800, 9, 18]], [], [1000, 2000, 10, 20]);
    pollUnits(sessions, [[step('7', '0'), '7', 100, 200, 1, 2]], [], [0, 0, 0, 0]);
    pollUnits(sessions, [[shell, undefined, 50, 60, 1, 1]], ['7']); // the job ended: its STOP
    sessions.stopAll(clock);
    const recs = records(ledger);
    expect(recs.filter((r) => r.sessionId.endsWith(';ubia-1000')).at(-1)!.counts).toEqual([50, 60, 1, 1]);
    expect(recs.filter((r) => r.sessionId.endsWith('-job-7')).at(-1)!.counts).toEqual([1000, 2000, 10, 20]);
  });

  it('a ledger from before job sessions (sessions keyed by uid) is re-keyed and its open session carries on', () => {
    const db = tempLedger();
    db.db.exec(`
      CREATE TABLE diameter_session (uid INTEGER PRIMARY KEY, user TEXT NOT NULL, session_id TEXT NOT NULL, started_ms INTEGER NOT NULL,
        last_traffic_ms INTEGER NOT NULL, last_record_ms INTEGER NOT NULL, next_record_number INTEGER NOT NULL, server_interim_s INTEGER,
        input_octets INTEGER NOT NULL, output_octets INTEGER NOT NULL, input_packets INTEGER NOT NULL, output_packets INTEGER NOT NULL,
        unconfirmed_input_octets INTEGER NOT NULL, unconfirmed_output_octets INTEGER NOT NULL, unconfirmed_input_packets INTEGER NOT NULL,
        unconfirmed_output_packets INTEGER NOT NULL);
      CREATE TABLE diameter_stopped_unconfirmed (uid INTEGER PRIMARY KEY, input_octets INTEGER NOT NULL, output_octets INTEGER NOT NULL,
        input_packets INTEGER NOT NULL, output_packets INTEGER NOT NULL);
      INSERT INTO diameter_session VALUES (4000, 'u4000', 'agent.test.local;1;9;ubia-4000', ${clock}, ${clock}, ${clock}, 1, NULL, 50, 60, 5, 6, 0, 0, 0, 0);
      INSERT INTO diameter_stopped_unconfirmed VALUES (4001, 1, 2, 3, 4);
    `);
    const { ledger, start } = setup({}, db);
    const sessions = start();
    poll(sessions, { 4000: [1, 1, 1, 1], 4001: [1, 2, 3, 4] }); // 4001's was counted before the crash
    sessions.stopAll(clock);
    const recs = records(ledger);
    expect(recs.map((r) => [r.type, r.sessionId, r.counts])).toEqual([[RecordType.Stop, 'agent.test.local;1;9;ubia-4000', [51, 61, 6, 7]]]);
    expect(ledger.readOutbox(0, 10)[0]!.recordNumber).toBe(1);
  });
});
