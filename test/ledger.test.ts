// Ledger + counter deltas with synthetic kernel snapshots: restart without loss or double
// count, counter resets, reboot detection, roll-ups that keep totals.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { columnsOf, CounterTracker, counterDelta, userKey, zeroCounters } from '../src/core/counters.js';
import { decodeCheckpoint, encodeCheckpoint, type WorkloadState } from '../src/agent/checkpoint.js';
import { DAY_MS, HOUR_MS, Ledger, MINUTE_MS } from '../src/ledger/ledger.js';
import type { UserCounters } from '../src/kernel/types.js';

const user = (uid: number, n: number): UserCounters => ({
  uid,
  scope: 'external',
  rxBytes: 10 * n,
  txBytes: 20 * n,
  rxPackets: n,
  txPackets: 2 * n,
  rxPayloadBytes: 8 * n,
  txPayloadBytes: 16 * n,
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ubia-ledger-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** One poll as the agent does it: deltas into the ledger, then (maybe) a flush with the
 *  checkpoint of the counter values behind them. */
function poll(ledger: Ledger, tracker: CounterTracker<number>, snapshot: UserCounters[], atMs: number, flush = true) {
  tracker.observe(
    columnsOf(snapshot),
    (i) => userKey(snapshot[i]!.uid, snapshot[i]!.scope),
    (i, d) => ledger.add(atMs, snapshot[i]!.uid, snapshot[i]!.scope, d),
  );
  if (flush) ledger.flush('boot-1', encodeCheckpoint(tracker.lastValues(), new Map()));
}

/** A fresh agent "life" on the ledger: the tracker starts from the stored checkpoint. */
function resume(ledger: Ledger, bootId: string) {
  const loaded = ledger.loadCheckpoint(bootId);
  return { tracker: new CounterTracker<number>(decodeCheckpoint(loaded.checkpoint).users), rebooted: loaded.rebooted };
}

describe('counter deltas', () => {
  it('a value below the last one is a new entry, counted whole', () => {
    expect(counterDelta(user(1, 5), user(1, 3)).rxBytes).toBe(20);
    expect(counterDelta(user(1, 2), user(1, 3)).rxBytes).toBe(20);
    expect(counterDelta(user(1, 2), undefined).txPayloadBytes).toBe(32);
  });
});

describe('checkpoint', () => {
  it('round-trips users, interfaces and the workload accounting; reads a version 2 one', () => {
    const c = { rxBytes: 1, txBytes: 2, rxPackets: 3, txPackets: 4, rxPayloadBytes: 5, txPayloadBytes: 6 };
    const workloads = { processes: [['1000:7:external:42:curl', 1, 2, 3, 4, 5, 6]], owed: [[2000, 1, 0, 1, 0, 0, 0]], queued: [['2000 /x.service', 0, 1, 0, 1, 0, 0]] } as WorkloadState;
    const data = encodeCheckpoint(new Map([[userKey(1000, 'loopback'), c]]), new Map([['2:eth0', c]]), workloads);
    expect(decodeCheckpoint(data)).toEqual({ users: [[2001, c]], interfaces: [['2:eth0', c]], workloads });
    // version 2 (before workloads): the JSON part is the interfaces' list alone
    const json = Buffer.from(JSON.stringify([['2:eth0', 1, 2, 3, 4, 5, 6]]));
    const v2 = Buffer.concat([Buffer.alloc(8), json, Buffer.alloc(Math.ceil(json.length / 8) * 8 - json.length)]);
    v2.writeUInt32LE(2, 0);
    v2.writeUInt32LE(json.length, 4);
    expect(decodeCheckpoint(v2)).toEqual({ users: [], interfaces: [['2:eth0', c]] });
    expect(decodeCheckpoint(undefined)).toEqual({ users: [], interfaces: [] });
    data.writeUInt32LE(9, 0);
    expect(() => decodeCheckpoint(data)).toThrow(/version 9 is not known/);
  });
});

describe('ledger', () => {
  const t0 = Date.UTC(2026, 10, 23, 10, 0, 0);
  const path = () => join(dir, 'ledger.db');

  it('survives a crash between flushes: nothing lost, nothing counted twice', () => {
    let ledger = new Ledger(path());
    let { tracker } = resume(ledger, 'boot-1');
    poll(ledger, tracker, [user(1, 100)], t0);
    poll(ledger, tracker, [user(1, 150)], t0 + 1000, false); // polled, not flushed: lost with the process
    ledger.db.close(); // "SIGKILL": the in-memory pending state is gone

    // the kernel kept counting meanwhile: 150 → 400
    ledger = new Ledger(path());
    const again = resume(ledger, 'boot-1');
    expect(again.rebooted).toBe(false);
    tracker = again.tracker;
    poll(ledger, tracker, [user(1, 400)], t0 + 5000);
    const [tot] = ledger.totals(t0, t0 + MINUTE_MS);
    expect(tot).toMatchObject({ uid: 1, rxBytes: 4000, txBytes: 8000, rxPackets: 400, txPayloadBytes: 6400 });
    ledger.close();
  });

  it('a new boot id means counters restarted from zero: all counted as new', () => {
    let ledger = new Ledger(path());
    let { tracker } = resume(ledger, 'boot-1');
    poll(ledger, tracker, [user(1, 100)], t0);
    ledger.close();
    ledger = new Ledger(path());
    const again = resume(ledger, 'boot-2');
    expect(again.rebooted).toBe(true);
    tracker = again.tracker;
    poll(ledger, tracker, [user(1, 30)], t0 + 2000);
    expect(ledger.totals(t0, t0 + MINUTE_MS)[0]!.rxPackets).toBe(130);
    ledger.close();
  });

  it('an entry that vanished and came back starts from zero', () => {
    const ledger = new Ledger(path());
    const tracker = new CounterTracker<number>();
    poll(ledger, tracker, [user(1, 100), user(2, 50)], t0);
    poll(ledger, tracker, [user(1, 100)], t0 + 1000); // uid 2's entry is gone
    poll(ledger, tracker, [user(1, 100), user(2, 70)], t0 + 2000); // and back, from zero
    const byUid = new Map(ledger.totals(t0, t0 + MINUTE_MS).map((t) => [t.uid, t]));
    expect(byUid.get(2)!.rxPackets).toBe(120);
    expect(byUid.get(1)!.rxPackets).toBe(100);
    ledger.close();
  });

  it('an open minute is stored as a blob: read back after a crash, written as rows once complete', () => {
    const minuteRows = (l: Ledger) =>
      l.db.prepare('SELECT rx_packets AS n FROM usage WHERE resolution_ms = ? AND bucket_ms = ?').all(MINUTE_MS, t0) as { n: number }[];
    const tracker = new CounterTracker<number>();
    const book = (l: Ledger, n: number, at: number) =>
      tracker.observe(columnsOf([user(1, n)]), () => 1, (_, d) => l.add(at, 1, 'external', d));
    let ledger = new Ledger(path());
    book(ledger, 10, t0 + 5000);
    ledger.flush('boot-1', encodeCheckpoint(tracker.lastValues(), new Map()), t0 + 6000); // the minute is still open
    expect(minuteRows(ledger)).toEqual([]);
    ledger.db.close(); // "SIGKILL"

    ledger = new Ledger(path());
    expect(ledger.totals(t0, t0 + MINUTE_MS)[0]!.rxPackets).toBe(10);
    book(ledger, 15, t0 + 30_000);
    ledger.flush('boot-1', encodeCheckpoint(tracker.lastValues(), new Map()), t0 + MINUTE_MS); // now complete
    expect(minuteRows(ledger)).toEqual([{ n: 15 }]);
    expect(ledger.totals(t0, t0 + MINUTE_MS)[0]!.rxPackets).toBe(15); // the rows, not rows + blob
    ledger.close();
    ledger = new Ledger(path());
    expect(ledger.totals(t0, t0 + MINUTE_MS)[0]!.rxPackets).toBe(15);
    ledger.close();
  });

  it('pending (unflushed) usage shows in totals', () => {
    const ledger = new Ledger(path());
    const tracker = new CounterTracker<number>();
    poll(ledger, tracker, [user(7, 3)], t0, false);
    expect(ledger.totals(t0, t0 + 1)[0]!.rxPackets).toBe(3);
    ledger.close();
  });

  /** Ten days up to t0, a sample every 7 minutes, user i (of `uids`) adding i+1 packets a
   *  sample, flushed; n = the samples. */
  function tenDays(uids: number[]) {
    const ledger = new Ledger(path());
    const tracker = new CounterTracker<number>();
    const start = t0 - 10 * DAY_MS;
    let n = 0;
    for (let t = start; t < t0; t += 7 * MINUTE_MS) {
      n++;
      tracker.observe(columnsOf(uids.map((uid, i) => user(uid, (i + 1) * n))), (i) => uids[i]!, (i, d) => {
        ledger.add(t, uids[i]!, 'external', d);
        // the same delta over two workloads, as the agent books it
        const half = { ...d, rxPackets: n % 2 };
        ledger.addUnit(t, uids[i]!, 'external', '/system.slice/a.service', half);
        ledger.addUnit(t, uids[i]!, 'external', '/system.slice/b.service', { ...zeroCounters(), rxPackets: d.rxPackets - half.rxPackets });
      });
    }
    ledger.flush('boot-1', encodeCheckpoint(tracker.lastValues(), new Map()));
    return { ledger, tracker, start, n };
  }

  it('roll-ups keep the totals and drop only what is past the last retention', () => {
    const { ledger, n } = tenDays([3]);
    const unitPackets = () => ledger.unitTotals(0, t0 + DAY_MS, 3).reduce((a, u) => a + u.rxPackets, 0);
    const before = ledger.totals(0, t0 + DAY_MS)[0]!;
    expect(before.rxPackets).toBe(n);
    expect(unitPackets()).toBe(n);
    ledger.rollUp(t0, { minuteMs: 2 * DAY_MS, hourMs: 5 * DAY_MS, dayMs: 365 * DAY_MS });
    expect(ledger.totals(0, t0 + DAY_MS)[0]!).toEqual(before);
    // the workload buckets roll up with the same cut-offs: still the user's total
    expect(unitPackets()).toBe(n);
    expect(ledger.totals(t0 - 3 * DAY_MS, t0)[0]!.rxPackets).toBe(ledger.unitTotals(t0 - 3 * DAY_MS, t0).reduce((a, u) => a + u.rxPackets, 0));
    const res = ledger.db
      .prepare('SELECT resolution_ms AS r, MIN(bucket_ms) AS first FROM usage GROUP BY resolution_ms ORDER BY r')
      .all() as { r: number; first: number }[];
    expect(res.map((x) => x.r)).toEqual([MINUTE_MS, HOUR_MS, DAY_MS]);
    expect(res[0]!.first).toBeGreaterThanOrEqual(t0 - 2 * DAY_MS - HOUR_MS);
    // a second roll-up is a no-op on totals; a short day retention drops old days
    ledger.rollUp(t0, { minuteMs: 2 * DAY_MS, hourMs: 5 * DAY_MS, dayMs: 365 * DAY_MS });
    expect(ledger.totals(0, t0 + DAY_MS)[0]!).toEqual(before);
    ledger.rollUp(t0, { minuteMs: 2 * DAY_MS, hourMs: 5 * DAY_MS, dayMs: 6 * DAY_MS });
    expect(ledger.totals(0, t0 + DAY_MS)[0]!.rxPackets).toBeLessThan(n);
    expect(unitPackets()).toBe(ledger.totals(0, t0 + DAY_MS)[0]!.rxPackets);
    ledger.close();
  });

  it('period totals split the same buckets: each once, in the period holding its middle, pending ones too', () => {
    const { ledger, tracker, start, n } = tenDays([3, 4]);
    tracker.observe(columnsOf([user(3, n + 5)]), () => 3, (_, d) => ledger.add(t0 + 30_000, 3, 'external', d)); // pending
    ledger.rollUp(t0, { minuteMs: 2 * DAY_MS, hourMs: 5 * DAY_MS, dayMs: 365 * DAY_MS });
    // a range that starts and ends inside rolled-up buckets, cut at +05:30 "local" hours
    const from = start + 3 * DAY_MS + 7 * HOUR_MS + 11 * MINUTE_MS;
    const to = t0 + MINUTE_MS;
    const edges: number[] = [];
    for (let e = from - (from % HOUR_MS) + HOUR_MS + 30 * MINUTE_MS; e < to; e += 5 * HOUR_MS) edges.push(e);
    const periods = ledger.periodTotals(from, to, edges);
    for (const uid of [3, 4]) {
      const whole = ledger.totals(from, to).find((t) => t.uid === uid)!;
      const mine = periods.filter((p) => p.uid === uid);
      const sum = mine.reduce((a, p) => ({ rx: a.rx + p.rxBytes, tx: a.tx + p.txPayloadBytes, pk: a.pk + p.txPackets }), { rx: 0, tx: 0, pk: 0 });
      expect(sum).toEqual({ rx: whole.rxBytes, tx: whole.txPayloadBytes, pk: whole.txPackets });
      expect(new Set(mine.map((p) => p.period)).size).toBe(mine.length);
      expect(Math.max(...mine.map((p) => p.period))).toBeLessThanOrEqual(edges.length);
    }
    // the pending minute lies in the last period; a day bucket in the one holding its noon
    const last = periods.find((p) => p.uid === 3 && p.period === edges.length)!;
    expect(last.rxPackets).toBeGreaterThanOrEqual(5);
    const day = start - (start % DAY_MS) + 2 * DAY_MS; // rolled up to days (older than 5 days)
    const inDay = (lo: number, hi: number) => ledger.periodTotals(lo, hi, [day + DAY_MS / 2 - 1, day + DAY_MS / 2 + 1]).filter((p) => p.uid === 3);
    expect(inDay(day, day + DAY_MS).map((p) => p.period)).toEqual([1]);
    ledger.close();
  });

  it('the counted range is the bucket-aligned range the sum reads: summing it gives the same totals', () => {
    const { ledger, tracker, start } = tenDays([3]);
    tracker.observe(columnsOf([user(3, 10_000)]), () => 3, (_, d) => ledger.add(t0 + 90_000, 3, 'external', d)); // pending
    ledger.rollUp(t0, { minuteMs: 2 * DAY_MS, hourMs: 5 * DAY_MS, dayMs: 365 * DAY_MS });
    const day = start - (start % DAY_MS) + 2 * DAY_MS; // rolled up to days
    const hour = t0 - 3 * DAY_MS - (t0 % HOUR_MS); // rolled up to hours
    const now = t0 + 90_500; // "--since 0s": an empty range inside the pending minute
    const cases: [number, number, number, number][] = [
      [now, now, t0 + MINUTE_MS, t0 + 2 * MINUTE_MS],
      [t0 - 3 * MINUTE_MS - 5, t0 - MINUTE_MS + 1, t0 - 4 * MINUTE_MS, t0],
      [hour + 7 * MINUTE_MS, hour + 2 * HOUR_MS + 1, hour, hour + 3 * HOUR_MS],
      [day + HOUR_MS, t0 + 1, day, t0 + MINUTE_MS],
    ];
    for (const [from, to, countedFrom, countedTo] of cases) {
      const counted = ledger.countedRange(from, to);
      expect(counted, `${from - t0}..${to - t0}`).toEqual({ fromMs: countedFrom, toMs: countedTo });
      expect(ledger.totals(counted.fromMs, counted.toMs)).toEqual(ledger.totals(from, to));
      expect(ledger.totals(from, to)[0]!.rxPackets).toBeGreaterThan(0);
    }
    ledger.close();
  });

  it('lifetime totals never go back: pending usage, open minutes after a crash, days deleted by retention', () => {
    const lifetime = (l: Ledger) => [...l.lifetimeTotals()].map((t) => ({ ...t }));
    let ledger = new Ledger(path());
    let { tracker } = resume(ledger, 'boot-1');
    // an old day, complete minutes, an open minute, and a poll never flushed
    poll(ledger, tracker, [user(1, 10)], t0 - 30 * DAY_MS);
    poll(ledger, tracker, [user(1, 100)], t0);
    poll(ledger, tracker, [user(1, 150)], t0 + MINUTE_MS + 1000);
    poll(ledger, tracker, [user(1, 170)], t0 + MINUTE_MS + 2000, false);
    expect(lifetime(ledger)).toEqual([user(1, 170)]);
    ledger.db.close(); // "SIGKILL"

    ledger = new Ledger(path());
    // reopened: what was flushed (the open minute included) until the agent's first poll
    expect(lifetime(ledger)).toEqual([user(1, 150)]);
    tracker = resume(ledger, 'boot-1').tracker;
    poll(ledger, tracker, [user(1, 200)], t0 + MINUTE_MS + 5000);
    expect(lifetime(ledger)).toEqual([user(1, 200)]);
    // the 30-day-old usage passes its retention: deleted from usage, kept in the lifetime
    ledger.rollUp(t0 + 2 * MINUTE_MS, { minuteMs: DAY_MS, hourMs: DAY_MS, dayMs: 7 * DAY_MS });
    expect(ledger.totals(0, t0 + DAY_MS)[0]!.rxPackets).toBe(190);
    ledger.close();
    ledger = new Ledger(path());
    expect(lifetime(ledger)).toEqual([user(1, 200)]);
    ledger.close();
  });
});
