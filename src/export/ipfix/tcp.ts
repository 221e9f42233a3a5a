// IPFIX over TCP (RFC 7011 §10.4): one connection per collector, templates once at the
// start of each connection (§8.1), messages up to 65535 bytes, reconnect with exponential
// backoff. Every record passes through the spool queue and leaves it only once the socket
// has taken it, so records wait (in order) while the collector is unreachable. Messages
// carry the spool's record numbers as Sequence Numbers (see disk-queue.ts): continuous within
// a connection as §3.1 asks, and the same for a record however often it is sent.
import { createConnection, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { createMessagePacker } from './encoding.js';
import { forEachEntry, type Batch, type RecordQueue } from './disk-queue.js';
import type { CollectorStatus, CollectorStream } from './stream.js';

const TCP_MESSAGE_BYTES = 65535; // RFC 7011 §3.1: Length is 16 bits

export function createTcpStream(opts: {
  host: string;
  port: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  templateSet: Buffer;
  observationDomainId: number;
  queue: RecordQueue;
  logger: Logger;
}): CollectorStream {
  const { host, port, queue, logger } = opts;
  const collector = `${host}:${port}`;
  let socket: Socket | null = null;
  let connected = false;
  let generation = 0; // connection number: callbacks of an old connection are ignored
  let backoffMs = opts.reconnectMinMs;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let lastError: string | null = null;
  let downSinceMs: number | null = null;
  let closing = false;
  let pumpScheduled = false;
  let sent = 0;
  let messages = 0;
  // how far the current batch has been handed to the socket (callbacks may still be pending):
  // byte offset and number of records
  let sending: { batch: Batch; offset: number; records: number } | null = null;
  let packedEnd = 0;
  let packingBatch: Batch | null = null;

  const packer = createMessagePacker({
    maxBytes: TCP_MESSAGE_BYTES,
    observationDomainId: opts.observationDomainId,
    sink: (msg) => {
      const s = socket!;
      const batch = packingBatch;
      const end = packedEnd;
      const gen = generation;
      s.write(msg.bytes, (err) => {
        if (err || gen !== generation) return;
        sent += msg.records;
        messages++;
        if (batch !== null && msg.records > 0) queue.delivered(batch, msg.records, end);
        schedulePump();
      });
    },
  });

  const maintenance = setInterval(() => queue.maintain(Date.now(), sending?.batch ?? null), 1000);
  maintenance.unref();

  function schedulePump(): void {
    if (pumpScheduled || !connected) return;
    pumpScheduled = true;
    setImmediate(() => {
      pumpScheduled = false;
      pump();
    });
  }

  function pump(): void {
    while (connected && socket !== null && !socket.writableNeedDrain) {
      const b = queue.next();
      if (b === null) break;
      if (sending === null || sending.batch !== b) sending = { batch: b, offset: b.doneOffset, records: b.done };
      const data = b.data!;
      if (sending.offset >= data.length) break; // all of it is in the socket; wait for the callbacks
      packingBatch = b;
      packedEnd = sending.offset;
      packer.setSequence(b.seq + sending.records);
      forEachEntry(data, sending.offset, (setId, record, end) => {
        packer.addRecord(setId, record);
        packedEnd = end;
        sending!.records++;
      });
      packer.flush();
      packingBatch = null;
      sending.offset = data.length;
    }
  }

  function connect(): void {
    reconnectTimer = null;
    const s = createConnection({ host, port });
    socket = s;
    s.setKeepAlive(true, 30_000);
    s.on('connect', () => {
      connected = true;
      generation++;
      backoffMs = opts.reconnectMinMs;
      if (downSinceMs !== null || lastError !== null) {
        logger.info({ collector, queued: queue.queued }, 'IPFIX/TCP: connected to the collector; sending spooled records');
      }
      lastError = null;
      downSinceMs = null;
      packingBatch = null;
      // a new connection is a new Transport Session (§3.1); its first message (templates
      // only) already carries the number of the first record that follows
      packer.setSequence(queue.firstUndelivered);
      packer.addTemplates(opts.templateSet);
      packer.flush();
      pump();
    });
    s.on('drain', schedulePump);
    s.on('data', () => { /* collectors send nothing over IPFIX/TCP */ });
    s.on('error', (err) => { lastError = err.message; });
    s.on('close', () => {
      const wasConnected = connected;
      connected = false;
      generation++;
      sending = null;
      socket = null;
      if (closing) return;
      if (downSinceMs === null) {
        downSinceMs = Date.now();
        logger.warn({ collector, err: lastError ?? 'connection closed by the collector', retryInSec: backoffMs / 1000 },
          wasConnected ? 'IPFIX/TCP: lost the collector; spooling records until it is back' : 'IPFIX/TCP: collector unreachable; spooling records until it is back');
      }
      lastError ??= 'connection closed by the collector';
      reconnectTimer = setTimeout(connect, backoffMs);
      backoffMs = Math.min(backoffMs * 2, opts.reconnectMaxMs);
    });
  }

  connect();

  return {
    send(setId, record) {
      queue.append(setId, record);
      schedulePump();
    },
    status(): CollectorStatus {
      // connected but more than a megabyte behind: catching up after an outage
      const state = connected ? (queue.spooledBytes > 1 << 20 ? 'degraded' : 'ok') : 'down';
      const detail = closing ? 'closed'
        : connected ? 'connected'
        : `unreachable${downSinceMs !== null ? ` since ${new Date(downSinceMs).toISOString()}` : ''}${lastError ? ` (${lastError})` : ''}; spooling`;
      return { collector, transport: 'tcp', state, detail, queued: queue.queued, dropped: queue.dropped, sent, messages, sequence: packer.sequence };
    },
    async close(timeoutMs) {
      closing = true;
      clearInterval(maintenance);
      if (reconnectTimer !== null) clearTimeout(reconnectTimer);
      const deadline = Date.now() + timeoutMs;
      if (socket !== null && !connected) {
        // a connection attempt is under way: give it the chance to deliver the queue
        const attempt = socket;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          const done = () => { clearTimeout(timer); resolve(); };
          attempt.once('connect', done);
          attempt.once('close', done);
        });
      }
      const s = socket;
      if (s !== null) {
        // let the queue drain while the collector is there, then end the connection so the
        // write callbacks of everything sent have fired before the rest is persisted
        while (connected && queue.queued > 0 && Date.now() < deadline) {
          pump();
          await new Promise((r) => setTimeout(r, 10));
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => { s.destroy(); resolve(); }, Math.max(100, deadline - Date.now()));
          s.once('close', () => { clearTimeout(timer); resolve(); });
          s.end();
        });
      }
      queue.persist();
      if (queue.queued > 0) logger.info({ collector, queued: queue.queued }, 'IPFIX/TCP: records kept in the spool for the next start');
    },
  };
}
