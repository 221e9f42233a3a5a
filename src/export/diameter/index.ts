// The Diameter accounting exporter: per-user (or per-job) sessions → ledger outbox → primary or
// secondary AAA server. See docs/diameter.md.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { Logger } from 'pino';
import type { Exporter, ExporterStatus, UsageInterval } from '../types.js';
import { createIdSequence } from './codec.js';
import type { DiameterConfig } from './config.js';
import { openDiameterOutbox } from './outbox.js';
import { createLoginWatch } from './logins.js';
import { createPeer, type Peer } from './peer.js';
import { createSender } from './sender.js';
import { createSessions } from './sessions.js';
import { cgroup2Mount } from '../../kernel/cgroups.js';

export { diameterConfigSchema, type DiameterConfig } from './config.js';

export interface DiameterDeps {
  logger: Logger;
  /** the agent's ledger database (WAL); the exporter keeps its tables there */
  db: BetterSqlite3.Database;
  /** this host's name: NAS-Identifier, and Origin-Host unless configured */
  hostName: string;
  /** systemd-logind's per-user state files (tests point this at a directory of their own) */
  loginStateDir?: string;
  /** where cgroup2 is mounted (null: none); default from /proc/self/mounts */
  cgroupRoot?: string | null;
}

/** Whether a job's cgroup directory is gone (Slurm removes job_<id> at the job's end):
 *  a stat, asked when the agent reports the job's workloads ended and, as a fallback,
 *  every tick (1 s) per open job session (sessions.ts). Not inotify: a watch holds nothing
 *  across an agent restart, so a job that ended while the agent was down would never
 *  STOP, and cgroup.events' "populated 0" means only that no process is left for now. A
 *  stat is a few µs; a node runs tens of jobs, not thousands. Without cgroup2 no job has
 *  a cgroup to wait for. */
function cgroupGone(root: string | null): (cgroup: string) => boolean {
  return (cgroup) => root === null || !existsSync(join(root, cgroup));
}

export type DiameterAccounting = Exporter;

/** How often sessions are checked for due INTERIMs and idle STOPs. */
const TICK_MS = 1000;

export function createDiameterAccounting(config: DiameterConfig, deps: DiameterDeps): DiameterAccounting {
  const logger = deps.logger.child({ exporter: 'diameter' });
  const originHost = config.origin_host ?? (deps.hostName.includes('.') ? deps.hostName : `${deps.hostName}.${config.origin_realm}`);
  // RFC 6733 §8.16: Origin-State-Id increases each time the state is lost; the start time does
  const originStateId = Math.floor(Date.now() / 1000) >>> 0;
  const ledger = openDiameterOutbox(deps.db);
  const nextEndToEnd = createIdSequence();
  const nextHopByHop = createIdSequence();

  const peers: Peer[] = config.servers.map((server) =>
    createPeer({
      server,
      tls: config.tls,
      identity: { originHost, originRealm: config.origin_realm, vendorId: config.vendor_id, productName: config.product_name, originStateId },
      watchdogMs: config.watchdog_interval * 1000,
      reconnectMaxMs: config.reconnect_interval * 1000,
      requestTimeoutMs: config.request_timeout * 1000,
      logger,
      nextEndToEnd,
      nextHopByHop,
      onStateChange: () => sender.wake(),
    }),
  );
  const sessions = createSessions(
    ledger,
    {
      originHost,
      originRealm: config.origin_realm,
      destinationRealm: config.destination_realm,
      destinationHost: config.destination_host,
      nasIdentifier: deps.hostName,
      interimIntervalS: config.interim_interval,
      idleStopS: config.idle_timeout,
      sessionPer: config.session_per,
      vendorId: config.enterprise_number,
      jobGone: cgroupGone(deps.cgroupRoot === undefined ? cgroup2Mount() : deps.cgroupRoot),
    },
    nextEndToEnd,
    () => sender.wake(),
  );
  const sender = createSender({
    ledger,
    peers,
    maxInFlight: config.max_in_flight,
    retryMaxMs: config.reconnect_interval * 1000,
    logger,
    onServerInterim: (sessionId, seconds) => sessions.setServerInterim(sessionId, seconds),
  });

  const logins = createLoginWatch(deps.loginStateDir);
  const tick = setInterval(() => {
    const now = Date.now();
    // the user's last login session ended: their accounting session ends with it
    for (const uid of logins.ended(sessions.uids())) sessions.stopUser(uid, now);
    sessions.tick(now);
  }, TICK_MS);
  tick.unref();
  logger.info({ originHost, servers: peers.map((p) => p.name), outbox: ledger.outboxDepth(), sessions: sessions.count }, 'diameter: accounting started');
  for (const p of peers) p.start();
  sender.wake(); // records left by an earlier run

  return {
    name: 'diameter',
    usage(interval: UsageInterval) {
      sessions.addUsage(interval);
    },
    checkpointed() {
      return sessions.saveConfirmed();
    },
    // Diameter accounting here is per user; flows are the IPFIX exporter's business
    flowEnded() {},
    status(): ExporterStatus {
      const open = peers.filter((p) => p.state === 'open');
      const queued = ledger.outboxDepth();
      const rejected = ledger.rejectedCount();
      const state = open.length === 0 ? 'down' : open[0] !== peers[0] || queued > config.max_in_flight ? 'degraded' : 'ok';
      // `ubia status` prints detail as it is: every peer's state, then the backlog
      const peerStates = peers
        .map((p) => `${p.name} ${p.state}${p.remoteHost && p.state === 'open' ? ` (${p.remoteHost})` : ''}${p.lastError && p.state !== 'open' ? ` (${p.lastError})` : ''}`)
        .join(', ');
      const summary =
        open.length === 0
          ? 'no AAA server reachable, records wait in the outbox'
          : `sending to ${open[0]!.name}${open[0] !== peers[0] ? ', failed over from the primary' : ''}`;
      const detail = `${summary}; peers: ${peerStates}; outbox ${queued}, in flight ${sender.inFlight}, sessions ${sessions.count}`;
      return {
        name: 'diameter',
        state,
        detail,
        queued,
        dropped: rejected,
        peers: peers.map((p) => ({ name: p.name, state: p.state, remoteHost: p.remoteHost, inFlight: p.inFlight, lastError: p.lastError })),
        extra: {
          sessions: sessions.count,
          outbox: queued,
          inFlight: sender.inFlight,
          rejected,
        },
      };
    },
    async close() {
      clearInterval(tick);
      // at shutdown the agent has just saved its checkpoint; on a reload it goes on with
      // its counters in memory: either way nothing counted so far comes back
      sessions.confirmed();
      sessions.stopAll(Date.now());
      const drained = await sender.drain(config.request_timeout * 1000);
      if (!drained) logger.warn({ outbox: ledger.outboxDepth() }, 'diameter: stopping with records not yet acknowledged; they are sent at the next start');
      await Promise.all(peers.map((p) => p.stop()));
      sender.close();
      logger.info('diameter: accounting stopped');
    },
  };
}
