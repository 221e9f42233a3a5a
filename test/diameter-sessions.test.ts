// Sessions over a real SQLite ledger, across simulated crashes: the agent hands over again
// what came after its last checkpoint, and no session, nor a user's next one, counts it
// twice. The ACRs are read back from the outbox as they would be sent.
import { afterEach, describe, expect, it } from 'vitest';
import { createIdSequence, decodeMessage, findAvp, readU32 } from '../src/export/diameter/codec.js';
import { Avp, RecordType } from '../src/export/diameter/dictionary.js';
import { openDiameterOutbox, type DiameterOutbox } from '../src/export/diameter/outbox.js';
import { createSessions, type Sessions } from '../src/export/diameter/sessions.js';
import { tempLedger, usage } from './peers/freediameter/client.js';

const disposers: (() => void)[] = [];
afterEach(() => disposers.splice(0).forEach((d) => d()));

/** A ledger database, and sessions over it that can be "restarted" as after a kill -9. */
function setup(): { ledger: DiameterOutbox; start(): Sessions } {
  const db = tempLedger();
  disposers.push(db.dispose);
  const ledger = openDiameterOutbox(db.db);
  const start = (): Sessions =>
    createSessions(
      ledger,
      { originHost: 'agent.test.local', originRealm: 'test.local', destinationRealm: 'test.local', nasIdentifier: 'agent', interimIntervalS: 300, idleStopS: 900 },
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
