// Turns the meter's cumulative flow snapshots into IPFIX flow records: one record per
// direction with the counts since the flow's previous record (delta counters, RFC 7011
// §2 "octetDeltaCount"), at socket close, at the active timeout, and after idleness.
import { countersOf, zeroCounters } from '../../core/counters.js';
import type { TrafficCounters } from '../../kernel/types.js';
import type { FlowSnapshot } from '../types.js';
import { DIRECTION, END_REASON } from './elements.js';

/** One direction of one flow over one reporting period, before addresses are encoded. */
export interface FlowExport {
  flow: FlowSnapshot;
  direction: 0 | 1;
  endReason: number;
  octets: number;
  packets: number;
  payloadOctets: number;
  startMs: number;
  endMs: number;
}

/** What has been reported of one flow so far; persisted so a restarted agent does not
 *  report again what the kernel (which keeps counting across restarts) already counted. */
export interface ReportedCounts extends TrafficCounters {
  /** start of the next record: end of the previous one */
  nextStartMs: number;
}

interface FlowState {
  last: FlowSnapshot;
  reported: ReportedCounts;
  lastReportMs: number;
  /** poll time at which the meter last listed the flow */
  listedMs: number;
}

export interface FlowTracker {
  /** every active flow at a poll; returns the records due (active or idle timeout) */
  active(flows: FlowSnapshot[], nowMs: number): FlowExport[];
  /** a socket closed: its final records (end of flow) */
  ended(flow: FlowSnapshot): FlowExport[];
  /** shutdown: pending deltas of every tracked flow (forced end) */
  shutdown(): FlowExport[];
  /** what has been reported per flow, to persist across restarts */
  reported(): Map<bigint, ReportedCounts>;
  readonly size: number;
}

export function createFlowTracker(opts: {
  activeTimeoutMs: number;
  idleTimeoutMs: number;
  /** reported counts saved by an earlier agent */
  resume?: Map<bigint, ReportedCounts>;
}): FlowTracker {
  const { activeTimeoutMs, idleTimeoutMs } = opts;
  const flows = new Map<bigint, FlowState>();
  const resumed = opts.resume ?? new Map<bigint, ReportedCounts>();

  function stateOf(flow: FlowSnapshot, nowMs: number): FlowState {
    let st = flows.get(flow.cookie);
    if (st === undefined) {
      const earlier = resumed.get(flow.cookie);
      if (earlier !== undefined) resumed.delete(flow.cookie);
      st = {
        last: flow,
        reported: earlier ?? { ...zeroCounters(), nextStartMs: flow.firstSeenMs },
        lastReportMs: earlier === undefined ? flow.firstSeenMs : nowMs,
        listedMs: nowMs,
      };
      flows.set(flow.cookie, st);
    }
    st.last = flow;
    return st;
  }

  /** Records for the counts not yet reported. `final`: also a record (possibly zero) for
   *  each direction that ever carried traffic, so the collector sees how each uniflow ended. */
  function report(st: FlowState, reason: number, final: boolean, out: FlowExport[]): void {
    const f = st.last;
    const r = st.reported;
    const startMs = r.nextStartMs;
    const endMs = Math.max(f.lastSeenMs, startMs);
    const push = (direction: 0 | 1, octets: number, packets: number, payloadOctets: number, ever: number) => {
      if (octets > 0 || packets > 0 || payloadOctets > 0 || (final && ever > 0)) {
        out.push({ flow: f, direction, endReason: reason, octets, packets, payloadOctets, startMs, endMs });
      }
    };
    // counters never go back for one socket cookie; clamp anyway so a meter bug cannot
    // produce a huge unsigned value
    push(DIRECTION.ingress, Math.max(0, f.rxBytes - r.rxBytes), Math.max(0, f.rxPackets - r.rxPackets),
      Math.max(0, f.rxPayloadBytes - r.rxPayloadBytes), f.rxBytes + f.rxPackets + f.rxPayloadBytes);
    push(DIRECTION.egress, Math.max(0, f.txBytes - r.txBytes), Math.max(0, f.txPackets - r.txPackets),
      Math.max(0, f.txPayloadBytes - r.txPayloadBytes), f.txBytes + f.txPackets + f.txPayloadBytes);
    st.reported = { ...countersOf(f), nextStartMs: endMs };
  }

  function pending(st: FlowState): boolean {
    const f = st.last, r = st.reported;
    return f.rxBytes > r.rxBytes || f.txBytes > r.txBytes || f.rxPackets > r.rxPackets
      || f.txPackets > r.txPackets || f.rxPayloadBytes > r.rxPayloadBytes || f.txPayloadBytes > r.txPayloadBytes;
  }

  return {
    active(list, nowMs) {
      const out: FlowExport[] = [];
      for (const flow of list) {
        const st = stateOf(flow, nowMs);
        st.listedMs = nowMs;
        if (!pending(st)) continue;
        if (nowMs - flow.lastSeenMs >= idleTimeoutMs) {
          report(st, END_REASON.idleTimeout, false, out);
          st.lastReportMs = nowMs;
        } else if (nowMs - st.lastReportMs >= activeTimeoutMs) {
          report(st, END_REASON.activeTimeout, false, out);
          st.lastReportMs = nowMs;
        }
      }
      // a flow the meter stopped listing without a close event (its event was lost, or the
      // map entry evicted): report what is pending and forget it
      for (const [cookie, st] of flows) {
        if (nowMs - st.listedMs >= idleTimeoutMs) {
          report(st, END_REASON.idleTimeout, false, out);
          flows.delete(cookie);
        }
      }
      return out;
    },
    ended(flow) {
      const out: FlowExport[] = [];
      const st = stateOf(flow, flow.lastSeenMs);
      report(st, END_REASON.endOfFlow, true, out);
      flows.delete(flow.cookie);
      return out;
    },
    shutdown() {
      const out: FlowExport[] = [];
      for (const st of flows.values()) if (pending(st)) report(st, END_REASON.forcedEnd, false, out);
      return out;
    },
    reported() {
      const m = new Map<bigint, ReportedCounts>();
      for (const [cookie, st] of flows) m.set(cookie, st.reported);
      return m;
    },
    get size() { return flows.size; },
  };
}
