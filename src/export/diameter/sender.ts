// Moves ACRs from the ledger outbox to the best open peer (the primary, else the
// secondary), up to maxInFlight at once, and settles each by its ACA: 2001 removes it,
// 5xxx rejects it for good (logged with the AVP the server named), anything else —
// 3xxx, 4xxx, malformed answer, timeout, lost connection — re-sends it with the T flag.
import type { Logger } from 'pino';
import { findAvp, groupedAvps, readU32, readUtf8, type DiameterMessage } from './codec.js';
import { Avp, avpName, resultClass, ResultCode } from './dictionary.js';
import type { DiameterOutbox, OutboxRecord } from './outbox.js';
import { resultCodeOf, type AnswerResult, type Peer } from './peer.js';

export interface SenderOptions {
  ledger: DiameterOutbox;
  peers: Peer[];
  maxInFlight: number;
  /** longest wait before a failed record is tried again */
  retryMaxMs: number;
  logger: Logger;
  onServerInterim: (sessionId: string, seconds: number) => void;
}

export interface Sender {
  /** send what can be sent now (cheap to call often: runs once per event-loop turn) */
  wake(): void;
  readonly inFlight: number;
  readonly rejectedSinceStart: number;
  /** resolves when nothing is waiting or in flight, or after timeoutMs; true when drained */
  drain(timeoutMs: number): Promise<boolean>;
  /** writes the acknowledgements received so far; after this the ledger is not touched */
  close(): void;
}

interface Waiting extends OutboxRecord {
  attempts: number;
  notBeforeMs: number;
}

const READ_BATCH = 2000;
const ACK_FLUSH_MS = 20;

export function createSender(opts: SenderOptions): Sender {
  const { ledger, peers, logger } = opts;
  let cursor = 0; // highest outbox id read into memory
  let sentMark = ledger.loadSentMark(); // highest outbox id saved as possibly sent
  const fresh: Waiting[] = [];
  const retry: Waiting[] = [];
  let inFlight = 0;
  let scheduled = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let rejected = 0;
  let acked: number[] = [];
  let closed = false;
  const drainWaiters = new Set<() => void>();
  // failures come in bursts (a peer lost with 1,000 requests in flight): one log line per burst
  const burst = new Map<string, number>();

  function note(what: string): void {
    if (burst.size === 0) {
      setImmediate(() => {
        for (const [line, n] of burst) logger.warn({ records: n }, `diameter: ${line}; will re-send with the T flag`);
        burst.clear();
      });
    }
    burst.set(what, (burst.get(what) ?? 0) + 1);
  }

  function next(nowMs: number): Waiting | undefined {
    if (retry.length && retry[0]!.notBeforeMs <= nowMs) return retry.shift();
    if (fresh.length === 0) {
      for (const r of ledger.readOutbox(cursor, READ_BATCH)) fresh.push({ ...r, attempts: 0, notBeforeMs: 0 });
      if (fresh.length) cursor = fresh.at(-1)!.id;
    }
    return fresh.shift();
  }

  // after close(), or once the agent has closed the database under a slow shutdown, the
  // outbox is left as it is for the next start
  const stopped = (): boolean => closed || !ledger.open;

  function pump(): void {
    scheduled = false;
    if (stopped()) return;
    const peer = peers.find((p) => p.state === 'open');
    if (!peer) return;
    const now = Date.now();
    const batch: Waiting[] = [];
    while (inFlight + batch.length < opts.maxInFlight) {
      const r = next(now);
      if (!r) break;
      batch.push(r);
    }
    armRetry();
    if (batch.length === 0) return settleDrain();
    // the sent mark is durable before the bytes leave: after a crash, a re-send carries T
    const highest = batch.reduce((max, r) => Math.max(max, r.id), 0);
    if (highest > sentMark) {
      ledger.saveSentMark(highest);
      sentMark = highest;
    }
    for (const r of batch) {
      const retransmit = r.sent;
      r.sent = true;
      inFlight++;
      peer.request(r.message, retransmit, (result) => {
        inFlight--;
        settle(r, peer, result);
        wake();
      });
    }
  }

  function settle(r: Waiting, peer: Peer, result: AnswerResult): void {
    if (stopped()) return; // the record stays in the outbox for the next start
    if (!result.ok) {
      note(`${result.reason === 'disconnected' ? 'ACRs in flight when the connection dropped' : `ACRs with a ${result.reason} answer`} (${result.detail}) on ${peer.name}`);
      return later(r, result.reason === 'disconnected');
    }
    const aca = result.answer;
    const code = resultCodeOf(aca);
    if (code === ResultCode.Success) {
      const interim = findAvp(aca.avps, Avp.AcctInterimInterval);
      if (interim) opts.onServerInterim(r.sessionId, readU32(interim));
      return ack(r.id);
    }
    if (code !== undefined && resultClass(code) === 'permanent') {
      const detail = describeFailure(aca, code);
      logger.error(
        { peer: peer.name, sessionId: r.sessionId, recordNumber: r.recordNumber, resultCode: code, detail },
        'diameter: server rejected an ACR for good; it is kept in diameter_rejected and counted in ubia status',
      );
      ledger.reject(r.id, { resultCode: code, detail, atMs: Date.now() });
      rejected++;
      return;
    }
    note(code === undefined ? `ACAs without a Result-Code from ${peer.name}` : `ACAs with transient Result-Code ${code} (${describeFailure(aca, code)}) from ${peer.name}`);
    later(r, false);
  }

  function later(r: Waiting, failover: boolean): void {
    // a lost connection moves the record to the other peer at once; a bad answer waits
    r.attempts++;
    r.notBeforeMs = failover ? 0 : Date.now() + Math.min(1000 * 2 ** Math.min(r.attempts - 1, 16), opts.retryMaxMs);
    const at = retry.findIndex((w) => w.notBeforeMs > r.notBeforeMs);
    if (at < 0) retry.push(r);
    else retry.splice(at, 0, r);
    armRetry();
  }

  /** wakes the sender when the first waiting retry falls due */
  function armRetry(): void {
    clearTimeout(retryTimer);
    if (retry.length === 0) return;
    retryTimer = setTimeout(wake, Math.max(1, retry[0]!.notBeforeMs - Date.now() + 1));
    retryTimer.unref();
  }

  function ack(id: number): void {
    // acks are removed in batches: one transaction per ACK_FLUSH_MS, not one per ACA (a
    // crash in between only means those records are re-sent with T)
    if (acked.length === 0) {
      setTimeout(() => {
        flushAcks();
        settleDrain();
      }, ACK_FLUSH_MS);
    }
    acked.push(id);
  }

  function flushAcks(): void {
    if (stopped() || acked.length === 0) return;
    const ids = acked;
    acked = [];
    ledger.remove(ids);
  }

  function idle(): boolean {
    return inFlight === 0 && retry.length === 0 && fresh.length === 0 && acked.length === 0 && ledger.outboxDepth() === 0;
  }

  function settleDrain(): void {
    if (drainWaiters.size && !stopped() && idle()) for (const w of drainWaiters) w();
  }

  function wake(): void {
    if (scheduled) return;
    scheduled = true;
    setImmediate(pump);
  }

  return {
    wake,
    get inFlight() {
      return inFlight;
    },
    get rejectedSinceStart() {
      return rejected;
    },
    drain(timeoutMs) {
      if (idle()) return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (ok: boolean): void => {
          clearTimeout(timer);
          drainWaiters.delete(onIdle);
          resolve(ok);
        };
        const onIdle = (): void => done(true);
        const timer = setTimeout(() => done(false), timeoutMs);
        drainWaiters.add(onIdle);
        wake();
      });
    },
    close() {
      flushAcks();
      closed = true;
      clearTimeout(retryTimer);
    },
  };
}

/** Result-Code, Error-Message and the AVPs inside Failed-AVP (RFC 6733 §7.5), for logs. */
export function describeFailure(aca: DiameterMessage, code: number): string {
  const parts = [`Result-Code ${code}`];
  const message = findAvp(aca.avps, Avp.ErrorMessage);
  if (message) parts.push(`Error-Message "${readUtf8(message)}"`);
  const failed = findAvp(aca.avps, Avp.FailedAvp);
  if (failed) {
    try {
      const named = groupedAvps(failed).map((a) => avpName(a.code, a.vendorId));
      parts.push(`Failed-AVP ${named.join(', ') || '(empty)'}`);
    } catch {
      parts.push('Failed-AVP (undecodable)');
    }
  }
  return parts.join(', ');
}
