// The counting vocabulary every layer shares (the ground floor: it imports nothing of
// ubia): the six traffic counters, the scope, a user's key, and monotonic kernel counters
// → deltas. The kernel never clears a counter, but an entry can vanish (ended flow,
// forgotten process, reboot) and come back from zero: any field lower than the last value
// seen means a new entry, whose whole value is the delta.

/** Whether a socket's packets use the loopback interface or a real one. */
export type Scope = 'loopback' | 'external';

/** Wire figures are L3 bytes (IP header included) and packets as they cross the wire
 *  (a GSO/TSO super-packet counts as its segments); payload figures are what the socket
 *  layer handed to or took from the process. */
export interface TrafficCounters {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  rxPayloadBytes: number;
  txPayloadBytes: number;
}

/** A user's counter key: uid and scope in one number (cheap Map key in the poll loop). */
/** One (uid, scope)'s counters: a user's total over some range. */
export interface UsageTotal extends TrafficCounters {
  uid: number;
  scope: Scope;
}

/** uid under which packets without a local socket owner are booked (per interface scope). */
export const UNATTRIBUTED_UID = -1;

export const userKey = (uid: number, scope: Scope): number => uid * 2 + (scope === 'loopback' ? 1 : 0);

/** The six counter columns of a table as the addon hands it over (typed arrays). */
export type CounterColumns = { length: number } & { [K in keyof TrafficCounters]: ArrayLike<number> };

export function zeroCounters(): TrafficCounters {
  return { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxPayloadBytes: 0, txPayloadBytes: 0 };
}

/** Only the six counter fields of a record that has more. */
export function countersOf(c: TrafficCounters): TrafficCounters {
  const out = zeroCounters();
  copyInto(out, c);
  return out;
}

/** Counter columns of a few rows (interfaces, tests); the big tables come as columns. */
export function columnsOf(rows: readonly TrafficCounters[]): CounterColumns {
  return {
    length: rows.length,
    rxBytes: rows.map((r) => r.rxBytes),
    txBytes: rows.map((r) => r.txBytes),
    rxPackets: rows.map((r) => r.rxPackets),
    txPackets: rows.map((r) => r.txPackets),
    rxPayloadBytes: rows.map((r) => r.rxPayloadBytes),
    txPayloadBytes: rows.map((r) => r.txPayloadBytes),
  };
}

/** Stores the six counters as float64 at `values[at]` onward (binary checkpoint, open
 *  ledger minutes); exact like the counters themselves. Returns the next offset. */
export function putCounters(values: Float64Array, at: number, c: TrafficCounters): number {
  values[at] = c.rxBytes;
  values[at + 1] = c.txBytes;
  values[at + 2] = c.rxPackets;
  values[at + 3] = c.txPackets;
  values[at + 4] = c.rxPayloadBytes;
  values[at + 5] = c.txPayloadBytes;
  return at + 6;
}

/** The six counters `putCounters` stored, read from little-endian bytes at `offset`. */
export function getCounters(data: Buffer, offset: number): TrafficCounters {
  const v = (i: number) => data.readDoubleLE(offset + i * 8);
  return { rxBytes: v(0), txBytes: v(1), rxPackets: v(2), txPackets: v(3), rxPayloadBytes: v(4), txPayloadBytes: v(5) };
}

export function isZero(c: TrafficCounters): boolean {
  return (
    c.rxBytes === 0 && c.txBytes === 0 && c.rxPackets === 0 && c.txPackets === 0 && c.rxPayloadBytes === 0 && c.txPayloadBytes === 0
  );
}

export function addInto(acc: TrafficCounters, d: TrafficCounters): void {
  acc.rxBytes += d.rxBytes;
  acc.txBytes += d.txBytes;
  acc.rxPackets += d.rxPackets;
  acc.txPackets += d.txPackets;
  acc.rxPayloadBytes += d.rxPayloadBytes;
  acc.txPayloadBytes += d.txPayloadBytes;
}

export function copyInto(out: TrafficCounters, c: TrafficCounters): void {
  out.rxBytes = c.rxBytes;
  out.txBytes = c.txBytes;
  out.rxPackets = c.rxPackets;
  out.txPackets = c.txPackets;
  out.rxPayloadBytes = c.rxPayloadBytes;
  out.txPayloadBytes = c.txPayloadBytes;
}

/** `current` − `last` into `out` when no counter went down (else `current` whole: the
 *  kernel entry is a new one that started from zero). */
function deltaInto(out: TrafficCounters, current: TrafficCounters, last: TrafficCounters): void {
  const restarted =
    current.rxBytes < last.rxBytes ||
    current.txBytes < last.txBytes ||
    current.rxPackets < last.rxPackets ||
    current.txPackets < last.txPackets ||
    current.rxPayloadBytes < last.rxPayloadBytes ||
    current.txPayloadBytes < last.txPayloadBytes;
  const base = restarted ? 0 : 1;
  out.rxBytes = current.rxBytes - base * last.rxBytes;
  out.txBytes = current.txBytes - base * last.txBytes;
  out.rxPackets = current.rxPackets - base * last.rxPackets;
  out.txPackets = current.txPackets - base * last.txPackets;
  out.rxPayloadBytes = current.rxPayloadBytes - base * last.rxPayloadBytes;
  out.txPayloadBytes = current.txPayloadBytes - base * last.txPayloadBytes;
}

/** current − last; the whole current value when there is no last or the entry restarted. */
export function counterDelta(current: TrafficCounters, last: TrafficCounters | undefined): TrafficCounters {
  const d = countersOf(current);
  if (last) deltaInto(d, current, last);
  return d;
}

/**
 * Last values seen per key. `observe` one full snapshot at a time; keys missing from it
 * are forgotten (their entry is gone in the kernel, a re-created one starts from zero).
 * Runs every poll over 10,000s of rows straight from the addon's columns: it allocates
 * nothing for a row whose counters did not move, and only a key's first sighting
 * allocates at all.
 */
export class CounterTracker<K> {
  private last = new Map<K, TrafficCounters & { round: number }>();
  private round = 0;
  /** the row being looked at, and its delta: reused for every row */
  private readonly current: TrafficCounters = zeroCounters();
  private readonly delta: TrafficCounters = zeroCounters();

  /** Starts from persisted last values (none after a reboot). */
  constructor(initial?: Iterable<[K, TrafficCounters]>) {
    if (initial) for (const [k, v] of initial) this.last.set(k, { ...countersOf(v), round: 0 });
  }

  /**
   * Feeds one complete snapshot; calls `onDelta(i, delta)` for each row i whose counters
   * moved. The delta object is reused between calls: copy it to keep it.
   */
  observe(table: CounterColumns, keyAt: (i: number) => K, onDelta: (i: number, delta: Readonly<TrafficCounters>) => void): void {
    const round = ++this.round;
    const cur = this.current;
    const d = this.delta;
    for (let i = 0; i < table.length; i++) {
      cur.rxBytes = table.rxBytes[i]!;
      cur.txBytes = table.txBytes[i]!;
      cur.rxPackets = table.rxPackets[i]!;
      cur.txPackets = table.txPackets[i]!;
      cur.rxPayloadBytes = table.rxPayloadBytes[i]!;
      cur.txPayloadBytes = table.txPayloadBytes[i]!;
      const key = keyAt(i);
      const seen = this.last.get(key);
      if (!seen) {
        this.last.set(key, { ...countersOf(cur), round });
        if (!isZero(cur)) onDelta(i, cur);
        continue;
      }
      seen.round = round;
      deltaInto(d, cur, seen);
      copyInto(seen, cur);
      if (!isZero(d)) onDelta(i, d);
    }
    for (const [key, seen] of this.last) if (seen.round !== round) this.last.delete(key);
  }

  get size(): number {
    return this.last.size;
  }

  /** Every key with its last values (for the ledger checkpoint). */
  lastValues(): ReadonlyMap<K, TrafficCounters> {
    return this.last;
  }
}
