// ubia's own health as OTLP metrics. The figures live in the agent (meter health, poll
// timing, every exporter's status, the Diameter peers), so the agent passes a function
// that returns them; it is called once per export, at collection time, never per poll.
import { ValueType, type Meter } from '@opentelemetry/api';
import type { HealthSource } from '../types.js';

export function registerHealthMetrics(meter: Meter, source: HealthSource): void {
  // counters: cumulative totals the agent keeps; gauges: the value at collection time
  const counter = (name: string, unit: string, description: string) =>
    meter.createObservableCounter(name, { description, unit, valueType: ValueType.INT });
  const gauge = (name: string, unit: string, description: string, valueType = ValueType.INT) =>
    meter.createObservableGauge(name, { description, unit, valueType });

  const unattributedIo = counter('ubia.unattributed.io', 'By', 'IP bytes with no local user socket behind them (kernel replies, time-wait, no socket)');
  const unattributedPackets = counter('ubia.unattributed.packets', '{packet}', 'IP packets with no local user socket behind them');
  const overflows = counter('ubia.meter.overflows', '{insert}', 'kernel map inserts refused because the map (peers: an unconnected socket\'s bound of peer flows) was full (counted, never lost)');
  const eventsDropped = counter('ubia.meter.events_dropped', '{event}', 'ring-buffer events that did not fit (their data is recovered by the map sweep)');
  const pollDuration = gauge('ubia.poll.duration', 's', 'time the last read of the kernel counters took', ValueType.DOUBLE);
  const queueDepth = gauge('ubia.exporter.queue.depth', '{record}', 'records waiting in an exporter (memory or spool)');
  const exporterDropped = counter('ubia.exporter.dropped', '{record}', 'records an exporter gave up on');
  const peerState = gauge('ubia.diameter.peer.state', '1', '1 for the current state of each Diameter peer (state-set: one series per state seen)');

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
