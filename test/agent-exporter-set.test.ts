// The exporter set across a reload that replaces the exporters: what the agent hands
// over while the old ones close and the new ones start reaches the new ones, in order,
// and never the closing ones (which have sent their last records and would drop it).
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createExporterSet } from '../src/agent/exporter-set.js';
import type { Exporter, UsageInterval } from '../src/export/types.js';

/** An exporter that records the usage intervals it is handed (by their start) and takes
 *  `closeMs` to close. */
function recordingExporter(name: string, closeMs = 0) {
  const got: number[] = [];
  let closed = false;
  const exporter: Exporter = {
    name,
    usage: (i: UsageInterval) => void got.push(closed ? -i.startMs : i.startMs),
    flowEnded: () => {},
    status: () => ({ name, state: 'ok', detail: '', queued: 0, dropped: 0 }),
    close: async () => {
      closed = true;
      await new Promise((resolve) => setTimeout(resolve, closeMs));
    },
  };
  return { exporter, got };
}

const interval = (startMs: number): UsageInterval => ({ startMs, endMs: startMs + 1, users: [] });
const logger = pino({ level: 'silent' });

describe('exporter set', () => {
  it('holds the calls made while replacing and hands them to the new exporters, in order', async () => {
    const set = createExporterSet(logger);
    const old = recordingExporter('ipfix', 50);
    const next = recordingExporter('ipfix');
    await set.start(async () => [old.exporter]);
    set.each('usage', (e) => e.usage(interval(1)));

    const replaced = set.replace(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20)); // a start that takes time
      return [next.exporter];
    });
    expect(set.replacing()).toBe(true);
    for (const t of [2, 3, 4]) {
      set.each('usage', (e) => e.usage(interval(t)));
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    await replaced;
    expect(set.replacing()).toBe(false);
    set.each('usage', (e) => e.usage(interval(5)));

    expect(old.got, 'the closing exporter gets nothing after its close began').toEqual([1]);
    expect(next.got).toEqual([2, 3, 4, 5]);
    expect(set.list()).toEqual([next.exporter]);
  });

  it('a new configuration whose exporters fail to start drops the held calls and runs none', async () => {
    const set = createExporterSet(logger);
    const old = recordingExporter('otlp');
    await set.start(async () => [old.exporter]);
    const replaced = set.replace(async () => {
      throw new Error('bad endpoint');
    });
    set.each('usage', (e) => e.usage(interval(2)));
    await replaced;
    expect(set.replacing()).toBe(false);
    expect(set.list()).toEqual([]);
    expect(old.got).toEqual([]);
  });
});
