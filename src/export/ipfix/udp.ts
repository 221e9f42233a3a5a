// IPFIX over UDP (RFC 7011 §10.3): messages under the path MTU, templates sent at start and
// re-sent every template_refresh seconds (§8.4), one stream per collector. UDP has no
// delivery feedback: records the socket could not send are counted as dropped.
import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { createMessagePacker, type EncodedMessage } from './encoding.js';
import type { CollectorStatus, CollectorStream } from './stream.js';

/** Messages kept while the collector's name is being resolved. */
const MAX_EARLY_MESSAGES = 1024;

export function createUdpStream(opts: {
  host: string;
  port: number;
  maxMessageBytes: number;
  templateRefreshMs: number;
  templateSet: Buffer;
  observationDomainId: number;
  logger: Logger;
  now?: () => number;
}): CollectorStream {
  const { host, port, logger } = opts;
  const now = opts.now ?? Date.now;
  const collector = `${host}:${port}`;
  let socket: Socket | null = null;
  let address: string | null = null;
  let early: EncodedMessage[] = [];
  let sent = 0;
  let messages = 0;
  let dropped = 0;
  let inFlight = 0;
  let lastError: string | null = null;
  let lastTemplatesMs = -Infinity;
  let flushScheduled = false;
  let closed = false;
  let idle: (() => void) | null = null;

  const packer = createMessagePacker({
    maxBytes: opts.maxMessageBytes,
    observationDomainId: opts.observationDomainId,
    sink: transmit,
  });

  function transmit(msg: EncodedMessage): void {
    if (socket === null || address === null) {
      if (early.length < MAX_EARLY_MESSAGES) early.push(msg);
      else dropped += msg.records;
      return;
    }
    inFlight++;
    socket.send(msg.bytes, port, address, (err) => {
      inFlight--;
      if (err) {
        dropped += msg.records;
        if (lastError === null) logger.warn({ collector, err: err.message }, 'IPFIX/UDP: cannot send to the collector; records are being dropped');
        lastError = err.message;
      } else {
        sent += msg.records;
        messages++;
        if (lastError !== null) logger.info({ collector }, 'IPFIX/UDP: sending to the collector again');
        lastError = null;
      }
      if (inFlight === 0 && idle) idle();
    });
  }

  function start(ip: string): void {
    address = ip;
    socket = createSocket(isIP(ip) === 6 ? 'udp6' : 'udp4');
    socket.on('error', (err) => logger.warn({ collector, err: err.message }, 'IPFIX/UDP socket error'));
    socket.unref();
    const waiting = early;
    early = [];
    for (const m of waiting) transmit(m);
  }

  function templatesIfDue(): void {
    const t = now();
    if (t - lastTemplatesMs >= opts.templateRefreshMs) {
      packer.addTemplates(opts.templateSet);
      lastTemplatesMs = t;
    }
  }

  function scheduleFlush(): void {
    if (flushScheduled) return;
    flushScheduled = true;
    // one message per burst of records: the agent hands a poll's records in one tick
    setImmediate(() => {
      flushScheduled = false;
      packer.flush();
    });
  }

  if (isIP(host)) start(host);
  else {
    lookup(host).then(
      (r) => { if (!closed) start(r.address); },
      (err: Error) => {
        lastError = `cannot resolve ${host}: ${err.message}`;
        logger.error({ collector, err: err.message }, 'IPFIX/UDP: cannot resolve the collector name; fix address in [[ipfix.collectors]]');
      },
    );
  }
  templatesIfDue(); // templates at start (§8.4)
  scheduleFlush();

  return {
    send(setId, record) {
      templatesIfDue();
      packer.addRecord(setId, record);
      scheduleFlush();
    },
    status(): CollectorStatus {
      const state = lastError !== null ? 'down' : address === null ? 'degraded' : 'ok';
      return {
        collector, transport: 'udp', state,
        detail: lastError ?? (address === null ? `resolving ${host}` : 'sending'),
        queued: early.reduce((n, m) => n + m.records, 0),
        dropped, sent, messages, sequence: packer.sequence,
      };
    },
    async close(timeoutMs) {
      packer.flush();
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          idle = () => { clearTimeout(timer); resolve(); };
        });
      }
      closed = true;
      dropped += early.reduce((n, m) => n + m.records, 0);
      early = [];
      socket?.close();
      socket = null;
    },
  };
}
