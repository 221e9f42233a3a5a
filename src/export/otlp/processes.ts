// Per-process traffic for OTLP, limited to the top N processes of each export interval
// (top-series.ts says how). The agent hands exporters flows with cumulative counters;
// this module turns them into per-process byte counts for `process.network.io`.
import type { Resource } from '@opentelemetry/resources';
import { zeroCounters } from '../../core/counters.js';
import type { FlowSnapshot } from '../types.js';
import { createTopSeries, type TopSeries } from './top-series.js';

/** A flow absent from this many consecutive polls is forgotten (its end was missed). */
const FLOW_ABSENT_POLLS = 3;

interface FlowSeen {
  txBytes: number;
  rxBytes: number;
  absentPolls: number;
}

export interface ProcessTop extends Omit<TopSeries, 'add'> {
  /** every active flow at a poll (cumulative counters) */
  activeFlows(flows: FlowSnapshot[]): void;
  /** a flow closed with its final cumulative counters */
  flowEnded(flow: FlowSnapshot): void;
}

function processKey(f: FlowSnapshot): string {
  return `${f.pid}\u0000${f.uid}\u0000${f.comm}`;
}

export function createProcessTop(opts: {
  topN: number;
  temporality: 'delta' | 'cumulative';
  resource: Resource;
  scope: { name: string; version: string };
  now?: () => number;
}): ProcessTop {
  const flows = new Map<bigint, FlowSeen>();
  const top = createTopSeries({
    ...opts,
    // OpenTelemetry semantic conventions: process.network.io (By, network.io.direction)
    metrics: [{ name: 'process.network.io', unit: 'By', description: `network bytes (IP layer) of the ${opts.topN} busiest processes of the interval`, tx: 'txBytes', rx: 'rxBytes' }],
  });
  const counts = zeroCounters();

  function account(f: FlowSnapshot, seen: FlowSeen | undefined): void {
    // Counters are cumulative per flow; a smaller value means a new socket re-used the cookie.
    counts.txBytes = seen && f.txBytes >= seen.txBytes ? f.txBytes - seen.txBytes : f.txBytes;
    counts.rxBytes = seen && f.rxBytes >= seen.rxBytes ? f.rxBytes - seen.rxBytes : f.rxBytes;
    if (counts.txBytes === 0 && counts.rxBytes === 0) return;
    top.add(processKey(f), () => ({
      'process.pid': f.pid,
      'process.executable.name': f.comm,
      'user.id': String(f.uid),
      'user.name': f.user,
    }), counts);
  }

  return {
    activeFlows(snapshot) {
      const present = new Set<bigint>();
      for (const f of snapshot) {
        present.add(f.cookie);
        account(f, flows.get(f.cookie));
        flows.set(f.cookie, { txBytes: f.txBytes, rxBytes: f.rxBytes, absentPolls: 0 });
      }
      for (const [cookie, seen] of flows) {
        if (!present.has(cookie) && ++seen.absentPolls >= FLOW_ABSENT_POLLS) flows.delete(cookie);
      }
    },

    flowEnded(f) {
      account(f, flows.get(f.cookie));
      flows.delete(f.cookie);
    },

    delivered: top.delivered,
    tracked: top.tracked,
    collect: top.collect,
  };
}
