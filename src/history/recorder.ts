// Feeds the flow store: the agent hands it what it hands every exporter (active flows at
// each flow read, ended flows as they close), and it cuts them into records with the same
// tracker as the IPFIX exporter (export/ipfix/flows.ts): a record at the end of a flow, at
// the active timeout and after idleness, each with the counts since the previous one.
import { readlinkSync } from 'node:fs';
import type { Logger } from 'pino';
import { createFlowTracker, type FlowExport, type ReportedCounts } from '../export/ipfix/flows.js';
import type { Exporter, ExporterStatus, FlowSnapshot } from '../export/types.js';
import type { FlowStore, StoreRetention, StoredFlow } from './store.js';

export interface RecorderOptions {
  activeTimeoutMs: number;
  idleTimeoutMs: number;
  flushIntervalMs: number;
  retention: StoreRetention;
  logger: Logger;
}

/** meta key of the tracker's per-flow reported counts, saved at close */
const TRACKER_STATE = 'tracker_state';
const RETENTION_EVERY_MS = 3_600_000;
/** pid → executable path look-ups kept; a new process costs one readlink */
const EXE_CACHE = 8192;

/** The tracker reports the two directions of one period as two entries, in a row: one record. */
export function recordsOf(exports: FlowExport[], exeOf: (pid: number) => string | null): StoredFlow[] {
  const out: StoredFlow[] = [];
  let last: { flow: FlowSnapshot; startMs: number; record: StoredFlow } | undefined;
  for (const e of exports) {
    let record = last && last.flow === e.flow && last.startMs === e.startMs ? last.record : undefined;
    if (!record) {
      const f = e.flow;
      record = {
        startMs: e.startMs, endMs: e.endMs, uid: f.uid, user: f.user, pid: f.pid, comm: f.comm, exe: exeOf(f.pid), unit: f.workload?.name ?? '',
        protocol: f.protocol, family: f.family, localAddress: f.localAddress, localPort: f.localPort,
        remoteAddress: f.remoteAddress, remotePort: f.remotePort,
        rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxPayloadBytes: 0, txPayloadBytes: 0,
      };
      out.push(record);
      last = { flow: e.flow, startMs: e.startMs, record };
    }
    record.endMs = Math.max(record.endMs, e.endMs);
    if (e.direction === 0) {
      record.rxBytes += e.octets;
      record.rxPackets += e.packets;
      record.rxPayloadBytes += e.payloadOctets;
    } else {
      record.txBytes += e.octets;
      record.txPackets += e.packets;
      record.txPayloadBytes += e.payloadOctets;
    }
  }
  return out;
}

/** /proc/PID/exe while the process lives (the agent is root); null after it exited. */
function exeLookup(): (pid: number) => string | null {
  const cache = new Map<number, string | null>();
  return (pid) => {
    if (pid === 0) return null;
    let exe = cache.get(pid);
    if (exe === undefined) {
      try {
        exe = readlinkSync(`/proc/${pid}/exe`);
      } catch {
        exe = null;
      }
      if (cache.size >= EXE_CACHE) cache.clear();
      cache.set(pid, exe);
    }
    return exe;
  };
}

function encodeState(m: Map<bigint, ReportedCounts>): string {
  return JSON.stringify([...m].map(([cookie, r]) => [cookie.toString(), r]));
}

function decodeState(text: string | undefined): Map<bigint, ReportedCounts> {
  if (!text) return new Map();
  return new Map((JSON.parse(text) as [string, ReportedCounts][]).map(([c, r]) => [BigInt(c), r]));
}

export async function createFlowRecorder(store: FlowStore, o: RecorderOptions): Promise<Exporter> {
  let resume: Map<bigint, ReportedCounts>;
  try {
    resume = decodeState(await store.getMeta(TRACKER_STATE));
  } catch (err) {
    o.logger.warn({ err: (err as Error).message }, 'history: cannot read the saved flow state; flows open at the last stop are recorded again from their start');
    resume = new Map();
  }
  const tracker = createFlowTracker({ activeTimeoutMs: o.activeTimeoutMs, idleTimeoutMs: o.idleTimeoutMs, resume });
  const exeOf = exeLookup();
  let pending: StoredFlow[] = [];
  let written = 0;
  let lastError: string | undefined;
  // writes go one after the other: the store has one connection
  let chain: Promise<void> = Promise.resolve();
  const enqueue = (work: () => Promise<void>) => {
    chain = chain.then(work).catch((err: unknown) => {
      const msg = (err as Error).message;
      if (lastError !== msg) o.logger.error({ err: msg, path: store.path }, 'history: writing the flow store failed');
      lastError = msg;
    });
    return chain;
  };
  const flush = () =>
    enqueue(async () => {
      const batch = pending;
      pending = [];
      await store.append(batch);
      written += batch.length;
      lastError = undefined;
    });
  const retain = () =>
    enqueue(async () => {
      const { deleted } = await store.enforceRetention(Date.now(), o.retention);
      if (deleted > 0) o.logger.info({ deleted }, 'history: records past their retention deleted');
    });
  void retain();
  const timers = [setInterval(() => void flush(), o.flushIntervalMs), setInterval(() => void retain(), RETENTION_EVERY_MS)];

  const take = (exports: FlowExport[]) => {
    for (const r of recordsOf(exports, exeOf)) pending.push(r);
  };

  return {
    name: 'history',
    usage() {
      // usage totals live in the ledger; the store keeps flows
    },
    activeFlows(flows, nowMs) {
      take(tracker.active(flows, nowMs));
    },
    flowEnded(flow) {
      take(tracker.ended(flow));
    },
    status(): ExporterStatus {
      return {
        name: 'history',
        state: lastError ? 'degraded' : 'ok',
        detail: lastError ? `flow store writes failing: ${lastError}` : `${written} flow records written since start to ${store.path}`,
        queued: pending.length,
        dropped: 0,
        extra: { trackedFlows: tracker.size, sizeBytes: store.sizeBytes() },
      };
    },
    async close() {
      for (const t of timers) clearInterval(t);
      // pending counts of open flows are NOT written as records here: the kernel keeps
      // counting them, and the next agent records them from the saved state on
      await flush();
      await enqueue(() => store.setMeta(TRACKER_STATE, encodeState(tracker.reported())));
    },
  };
}
