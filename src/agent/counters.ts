// Monotonic kernel counters → deltas. The kernel never clears a counter, but an entry can
// vanish (ended flow, forgotten process, reboot) and come back from zero: any field
// lower than the last value seen means a new entry, whose whole value is the delta.
import type { TrafficCounters } from '../kernel/types.js';

export function zeroCounters(): TrafficCounters {
  return { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxPayloadBytes: 0, txPayloadBytes: 0 };
}

/** Only the six counter fields of a record that has more. */
export function countersOf(c: TrafficCounters): TrafficCounters {
  return {
    rxBytes: c.rxBytes,
    txBytes: c.txBytes,
    rxPackets: c.rxPackets,
    txPackets: c.txPackets,
    rxPayloadBytes: c.rxPayloadBytes,
    txPayloadBytes: c.txPayloadBytes,
  };
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

/** Did any counter go down? Then the kernel entry is a new one that started from zero. */
function restarted(current: TrafficCounters, last: TrafficCounters): boolean {
  return (
    current.rxBytes < last.rxBytes ||
    current.txBytes < last.txBytes ||
    current.rxPackets < last.rxPackets ||
    current.txPackets < last.txPackets ||
    current.rxPayloadBytes < last.rxPayloadBytes ||
    current.txPayloadBytes < last.txPayloadBytes
  );
}

/** current − last; the whole current value when there is no last or the entry restarted. */
export function counterDelta(current: TrafficCounters, last: TrafficCounters | undefined): TrafficCounters {
  if (!last || restarted(current, last)) return countersOf(current);
  return {
    rxBytes: current.rxBytes - last.rxBytes,
    txBytes: current.txBytes - last.txBytes,
    rxPackets: current.rxPackets - last.rxPackets,
    txPackets: current.txPackets - last.txPackets,
    rxPayloadBytes: current.rxPayloadBytes - last.rxPayloadBytes,
    txPayloadBytes: current.txPayloadBytes - last.txPayloadBytes,
  };
}

interface Seen extends TrafficCounters {
  /** the observe() round that last saw the key */
  round: number;
}

/**
 * Last values seen per key. `observe` one full snapshot at a time; keys missing from it
 * are forgotten (their entry is gone in the kernel, a re-created one starts from zero).
 * Runs every poll over thousands of keys, so it updates in place instead of allocating.
 */
export class CounterTracker<K> {
  private last = new Map<K, Seen>();
  private round = 0;
  private readonly scratch: TrafficCounters = zeroCounters();

  /** Starts from persisted last values (none after a reboot). */
  constructor(initial?: Iterable<[K, TrafficCounters]>) {
    if (initial) for (const [k, v] of initial) this.last.set(k, { ...countersOf(v), round: 0 });
  }

  /**
   * Feeds one complete snapshot; calls `onDelta` for each key with a non-zero delta.
   * The delta object is reused between calls: copy it to keep it.
   */
  observe<T extends TrafficCounters>(
    snapshot: Iterable<T>,
    keyOf: (entry: T) => K,
    onDelta: (entry: T, delta: Readonly<TrafficCounters>) => void,
  ): void {
    const round = ++this.round;
    const d = this.scratch;
    for (const entry of snapshot) {
      const key = keyOf(entry);
      const seen = this.last.get(key);
      if (!seen) {
        this.last.set(key, { ...countersOf(entry), round });
        if (!isZero(entry)) onDelta(entry, countersOf(entry));
        continue;
      }
      seen.round = round;
      if (restarted(entry, seen)) {
        Object.assign(d, countersOf(entry));
      } else {
        d.rxBytes = entry.rxBytes - seen.rxBytes;
        d.txBytes = entry.txBytes - seen.txBytes;
        d.rxPackets = entry.rxPackets - seen.rxPackets;
        d.txPackets = entry.txPackets - seen.txPackets;
        d.rxPayloadBytes = entry.rxPayloadBytes - seen.rxPayloadBytes;
        d.txPayloadBytes = entry.txPayloadBytes - seen.txPayloadBytes;
        if (isZero(d)) continue;
      }
      seen.rxBytes = entry.rxBytes;
      seen.txBytes = entry.txBytes;
      seen.rxPackets = entry.rxPackets;
      seen.txPackets = entry.txPackets;
      seen.rxPayloadBytes = entry.rxPayloadBytes;
      seen.txPayloadBytes = entry.txPayloadBytes;
      onDelta(entry, d);
    }
    for (const [key, seen] of this.last) if (seen.round !== round) this.last.delete(key);
  }

  get size(): number {
    return this.last.size;
  }

  /** Every key with its last values (for the ledger checkpoint). */
  *entries(): IterableIterator<[K, TrafficCounters]> {
    for (const [k, v] of this.last) yield [k, v];
  }
}
