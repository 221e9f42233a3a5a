// ubia's own health as OTLP metrics. The figures live in the agent (meter health, poll
// timing, every exporter's status, the Diameter peer), so the agent passes a function that
// returns them; it is called once per export, at collection time, never per poll.
import { ValueType, type Meter } from '@opentelemetry/api';
import type { MeterHealth, UnattributedCounters } from '../../kernel/types.js';
import type { ExporterStatus } from '../types.js';

export interface OtlpHealth {
  /** cumulative since the meter was loaded, summed over interfaces */
  unattributed: UnattributedCounters;
  /** the meter's cumulative map overflows and dropped ring-buffer events */
  meter: MeterHealth;
  /** wall-clock seconds the last poll of the kernel counters took */
  lastPollSeconds: number;
  /** every exporter's status (queue depth, drops, state) */
  exporters: ExporterStatus[];
  /** Diameter peers and their state-machine state (RFC 6733 §5.6), e.g. 'I-Open' */
  diameterPeers: Array<{ peer: string; state: string }>;
}

export type HealthSource = () => OtlpHealth | undefined;

export function registerHealthMetrics(meter: Meter, source: HealthSource): void {
  const unattributedIo = meter.createObservableCounter('ubia.unattributed.io', {
    description: 'IP bytes with no local user socket behind them (kernel replies, time-wait, no socket)',
    unit: 'By',
    valueType: ValueType.INT,
  });
  const unattributedPackets = meter.createObservableCounter('ubia.unattributed.packets', {
    description: 'IP packets with no local user socket behind them',
    unit: '{packet}',
    valueType: ValueType.INT,
  });
  const overflows = meter.createObservableCounter('ubia.meter.overflows', {
    description: 'kernel map inserts refused because the map was full (counted, never lost)',
    unit: '{insert}',
    valueType: ValueType.INT,
  });
  const eventsDropped = meter.createObservableCounter('ubia.meter.events_dropped', {
    description: 'ring-buffer events that did not fit (their data is recovered by the map sweep)',
    unit: '{event}',
    valueType: ValueType.INT,
  });
  const pollDuration = meter.createObservableGauge('ubia.poll.duration', {
    description: 'time the last read of the kernel counters took',
    unit: 's',
    valueType: ValueType.DOUBLE,
  });
  const queueDepth = meter.createObservableGauge('ubia.exporter.queue.depth', {
    description: 'records waiting in an exporter (memory or spool)',
    unit: '{record}',
    valueType: ValueType.INT,
  });
  const exporterDropped = meter.createObservableCounter('ubia.exporter.dropped', {
    description: 'records an exporter gave up on',
    unit: '{record}',
    valueType: ValueType.INT,
  });
  const peerState = meter.createObservableGauge('ubia.diameter.peer.state', {
    description: '1 for the current state of each Diameter peer (state-set: one series per state seen)',
    unit: '1',
    valueType: ValueType.INT,
  });

  meter.addBatchObservableCallback(
    (result) => {
      const h = source();
      if (!h) return;
      for (const direction of ['transmit', 'receive'] as const) {
        const tx = direction === 'transmit';
        const attrs = { 'network.io.direction': direction };
        result.observe(unattributedIo, tx ? h.unattributed.txBytes : h.unattributed.rxBytes, attrs);
        result.observe(unattributedPackets, tx ? h.unattributed.txPackets : h.unattributed.rxPackets, attrs);
      }
      for (const [map, count] of Object.entries(h.meter.overflows)) {
        result.observe(overflows, count, { 'ubia.map': map });
      }
      result.observe(eventsDropped, h.meter.eventsDropped);
      result.observe(pollDuration, h.lastPollSeconds);
      for (const e of h.exporters) {
        result.observe(queueDepth, e.queued, { 'ubia.exporter': e.name });
        result.observe(exporterDropped, e.dropped, { 'ubia.exporter': e.name });
      }
      for (const p of h.diameterPeers) {
        result.observe(peerState, 1, { 'ubia.diameter.peer': p.peer, 'ubia.diameter.peer.state': p.state });
      }
    },
    [unattributedIo, unattributedPackets, overflows, eventsDropped, pollDuration, queueDepth, exporterDropped, peerState],
  );
}
