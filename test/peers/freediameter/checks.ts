// What every test against the real server checks in the rows app_acct stored.
import { expect } from 'vitest';
import { RecordType } from '../../../src/export/diameter/dictionary.js';
import type { AcctRow, ReceivedAcr } from './harness.js';

export const bySession = (rows: AcctRow[]): Map<string, AcctRow[]> => {
  const m = new Map<string, AcctRow[]>();
  for (const r of rows) m.set(r.sessionId, [...(m.get(r.sessionId) ?? []), r]);
  for (const list of m.values()) list.sort((a, b) => a.recordNumber - b.recordNumber);
  return m;
};

const key = (r: { sessionId: string; recordNumber: number }): string => `${r.sessionId}#${r.recordNumber}`;

/** Rows once per (Session-Id, record number); a record stored twice must have been
 *  received again with the T flag (RFC 6733 §3, §9.4: the server may drop duplicates). */
export function dedupeChecked(rows: AcctRow[], received: ReceivedAcr[]): AcctRow[] {
  const firstSends = new Map<string, number>();
  for (const r of received) if (!r.retransmit) firstSends.set(key(r), (firstSends.get(key(r)) ?? 0) + 1);
  for (const [k, n] of firstSends) expect(n, `${k} sent ${n} times without the T flag`).toBe(1);
  const seen = new Map<string, AcctRow>();
  for (const r of rows) {
    const k = key(r);
    if (seen.has(k)) {
      expect(received.filter((x) => key(x) === k && x.retransmit).length, `${k} stored twice but never re-sent with T`).toBeGreaterThan(0);
      expect(r).toEqual(seen.get(k)); // a re-send carries the same bytes
    } else seen.set(k, r);
  }
  return [...seen.values()];
}

export /** Each session: START first, record numbers 0,1,2,… without gaps or repeats, counters
 *  never going down, STOP last. */
function expectWellFormedSession(rows: AcctRow[]): void {
  expect(rows.map((r) => r.recordNumber)).toEqual(rows.map((_, i) => i));
  expect(rows[0]!.recordType).toBe(RecordType.Start);
  expect(rows.at(-1)!.recordType).toBe(RecordType.Stop);
  for (const r of rows.slice(1, -1)) expect(r.recordType).toBe(RecordType.Interim);
  for (let i = 1; i < rows.length; i++) {
    for (const c of ['inputOctets', 'outputOctets', 'inputPackets', 'outputPackets'] as const) {
      expect(rows[i]![c], `${c} of record ${i}`).toBeGreaterThanOrEqual(rows[i - 1]![c]);
    }
  }
}
