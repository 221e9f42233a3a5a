// The traffic counters OTLP exports per user and per (user, unit), each by
// network.io.direction: the tx field is "transmit", rx "receive".
import type { SeriesMetric } from './top-series.js';

/** `ubia.user.*` or `ubia.unit.*`; the wire bytes first (they rank the top units). */
export function trafficMetrics(of: 'user' | 'unit'): SeriesMetric[] {
  const within = of === 'unit' ? ' in a unit (systemd unit, batch job, container)' : '';
  return [
    { name: `ubia.${of}.network.io`, unit: 'By', tx: 'txBytes', rx: 'rxBytes', description: `IP-layer bytes (headers included, as on the wire) of a user${within}` },
    { name: `ubia.${of}.network.packets`, unit: '{packet}', tx: 'txPackets', rx: 'rxPackets', description: `IP packets of a user${within} (a GSO/TSO super-packet counts as its segments)` },
    { name: `ubia.${of}.network.payload.io`, unit: 'By', tx: 'txPayloadBytes', rx: 'rxPayloadBytes', description: `socket payload bytes a user's processes${within} sent or received` },
  ];
}
