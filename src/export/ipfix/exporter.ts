// The IPFIX exporter the agent drives: flow records (per direction, at socket close, at
// the active/idle timeout, at shutdown) and per-user interval records, encoded for each
// configured collector with that collector's templates and privacy settings.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { Logger } from 'pino';
import type { Exporter, ExporterStatus, FlowSnapshot, UsageInterval } from '../types.js';
import type { IpfixCollectorConfig, IpfixConfig } from './config.js';
import { cgroup2Mount, createCgroupPaths } from '../../kernel/cgroups.js';
import type { ElementOptions } from './elements.js';
import { createFlowTracker, type FlowExport, type ReportedCounts } from './flows.js';
import { createRecordEncoder, type RecordEncoder } from './records.js';
import { createRecordQueue } from './disk-queue.js';
import type { CollectorStream } from './stream.js';
import { createTcpStream } from './tcp.js';
import { createUdpStream } from './udp.js';
import { createUsageAggregator, type UserRecord } from './usage.js';
import { openUsageStore } from './usage-store.js';

/** How long close() tries to deliver before it writes the rest to the spool: the agent
 *  gives all exporters 1.5 s together and then exits (closeExporters in agent.ts), so
 *  the spool must be on disk well before that. */
const CLOSE_TIMEOUT_MS = 1000;
/** Skipped records logged one by one; after that they are only counted. */
const MAX_SKIP_LOGS = 10;

interface Collector {
  encoder: RecordEncoder;
  stream: CollectorStream;
}

/** Directory name for one collector's spool: safe for any host name or IPv6 literal. */
function collectorDirName(c: IpfixCollectorConfig): string {
  return `${c.transport}-${c.address.replace(/[^A-Za-z0-9.-]/g, '_')}-${c.port}`;
}

function loadReported(file: string, logger: Logger): Map<bigint, ReportedCounts> {
  try {
    const rows = JSON.parse(readFileSync(file, 'utf8')) as Array<[string, ReportedCounts]>;
    return new Map(rows.map(([cookie, r]) => [BigInt(cookie), r]));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      logger.warn({ file, err: (err as Error).message }, 'IPFIX: cannot read the saved flow state; flows open at the last shutdown will be reported again from their start');
    }
    return new Map();
  }
}

function saveReported(file: string, reported: Map<bigint, ReportedCounts>): void {
  const rows = [...reported].map(([cookie, r]) => [cookie.toString(), r]);
  writeFileSync(`${file}.tmp`, JSON.stringify(rows));
  renameSync(`${file}.tmp`, file);
}

/**
 * Builds the exporter from the validated [ipfix] section. `spoolDir` is a directory the
 * agent gives this exporter alone (e.g. /var/lib/ubia/ipfix-spool): one spool directory per
 * TCP collector and the flow state file go there. `db` is the agent's ledger database: the
 * open per-user usage window is saved there with the agent's checkpoint, and a complete
 * window's records are sent once it is (exact across a crash, see usage.ts); without it
 * (an exporter driven directly, no checkpoints) they are sent when the window completes.
 * Throws with a message saying what to fix when a collector cannot be set up (e.g. an
 * unreadable Crypto-PAn key file).
 */
export function createIpfixExporter(config: IpfixConfig, deps: { logger: Logger; spoolDir: string; db?: BetterSqlite3.Database }): Exporter {
  const { logger, spoolDir: stateDir } = deps;
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const flowStateFile = join(stateDir, 'flows.json');
  const elements: ElementOptions = { pen: config.enterprise_number, ids: config.element_ids, profile: config.profile };

  const cgroupPathOf = createCgroupPaths({ root: cgroup2Mount(), logger });
  const collectors: Collector[] = config.collectors.map((c) => {
    const encoder = createRecordEncoder(c, elements, cgroupPathOf);
    const common = { host: c.address, port: c.port, templateSet: encoder.templateSet, observationDomainId: config.observation_domain_id, logger };
    const stream = c.transport === 'udp'
      ? createUdpStream({ ...common, maxMessageBytes: c.udp_message_bytes, templateRefreshMs: c.template_refresh * 1000 })
      : createTcpStream({
        ...common,
        reconnectMinMs: c.reconnect_min * 1000,
        reconnectMaxMs: c.reconnect_max * 1000,
        queue: createRecordQueue({ dir: join(stateDir, collectorDirName(c)), maxBytes: c.spool_max_bytes, templateSet: encoder.templateSet, logger }),
      });
    logger.info({ collector: `${c.address}:${c.port}`, transport: c.transport, records: c.records, anonymize: c.anonymize }, 'IPFIX: exporting to collector');
    return { encoder, stream };
  });
  const scratch = Buffer.allocUnsafe(Math.max(...collectors.map((c) => c.encoder.maxRecordBytes)));
  const tracker = createFlowTracker({
    activeTimeoutMs: config.active_timeout * 1000,
    idleTimeoutMs: config.idle_timeout * 1000,
    resume: loadReported(flowStateFile, logger),
  });
  const usageStore = deps.db && openUsageStore(deps.db);
  const usage = createUsageAggregator(config.usage_interval * 1000, usageStore?.load());
  let closed = false;
  let unencodable = 0;

  /** Encodes each record for every collector that takes its kind. A record that cannot be
   *  encoded (a meter bug: an address that is not one) or does not fit the collector's
   *  messages (a name longer than udp_message_bytes allows) is skipped and counted: it
   *  must not stop the export of the others. */
  function exportTo<R>(kind: 'flows' | 'users', records: R[], encode: (encoder: RecordEncoder, r: R) => { setId: number; length: number }): void {
    if (records.length === 0) return;
    for (const { encoder, stream } of collectors) {
      if (!encoder[kind]) continue;
      for (const r of records) {
        try {
          const { setId, length } = encode(encoder, r);
          stream.send(setId, scratch.subarray(0, length));
        } catch (err) {
          if (unencodable++ < MAX_SKIP_LOGS) {
            logger.error({ collector: stream.status().collector, err: (err as Error).message },
              'IPFIX: cannot export a record; skipped it (counted as dropped in ubia status; raise udp_message_bytes if it did not fit)');
          }
        }
      }
    }
  }
  const exportFlows = (records: FlowExport[]) => exportTo('flows', records, (e, r) => e.encodeFlow(r, scratch));
  const exportUsers = (records: UserRecord[]) => exportTo('users', records, (e, r) => e.encodeUser(r, scratch));

  return {
    name: 'ipfix',
    usage(interval: UsageInterval) {
      if (closed) return;
      usage.add(interval);
      if (!usageStore) exportUsers(usage.checkpointed());
    },
    checkpointed() {
      if (!usageStore) return;
      usageStore.save(usage.atCheckpoint());
      return () => {
        const records = usage.checkpointed();
        if (!closed) exportUsers(records);
      };
    },
    activeFlows(flows: FlowSnapshot[], nowMs: number) {
      if (!closed) exportFlows(tracker.active(flows, nowMs));
    },
    flowEnded(flow: FlowSnapshot) {
      if (!closed) exportFlows(tracker.ended(flow));
    },
    status(): ExporterStatus {
      const all = collectors.map((c) => c.stream.status());
      const state = all.every((s) => s.state === 'ok') ? 'ok' : all.every((s) => s.state === 'down') ? 'down' : 'degraded';
      return {
        name: 'ipfix',
        state,
        detail: all.map((s) => `${s.transport} ${s.collector}: ${s.detail}`).join('; '),
        queued: all.reduce((n, s) => n + s.queued, 0),
        dropped: all.reduce((n, s) => n + s.dropped, unencodable),
        extra: { collectors: all, trackedFlows: tracker.size, unencodable },
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      exportFlows(tracker.shutdown());
      const records = usage.flush();
      try {
        usageStore?.save(usage.atCheckpoint());
      } catch (err) {
        logger.error({ err: (err as Error).message }, 'IPFIX: cannot clear the saved per-user usage window; the next start sends its counts again');
      }
      exportUsers(records);
      try {
        saveReported(flowStateFile, tracker.reported());
      } catch (err) {
        logger.error({ file: flowStateFile, err: (err as Error).message }, 'IPFIX: cannot save the flow state; open flows will be reported again from their start after the restart');
      }
      await Promise.all(collectors.map((c) => c.stream.close(CLOSE_TIMEOUT_MS)));
    },
  };
}
