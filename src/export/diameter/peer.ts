// One Diameter peer connection as an initiator: the RFC 6733 §5.6 state machine (ubia
// only connects, never listens, so no election): connect, capabilities exchange,
// requests and answers, disconnect, and reconnection with back-off up to Tc. Its helpers
// have files of their own: the pending-request table (pending.ts), the RFC 3539 watchdog
// (watchdog.ts) and the base-protocol messages (base-messages.ts).
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import {
  avpU32,
  createFramer,
  decodeMessage,
  encodeAvp,
  findAvp,
  Flag,
  AvpFlag,
  readU32,
  readUtf8,
  DiameterDecodeError,
  type DiameterMessage,
} from './codec.js';
import {
  ACCOUNTING_APPLICATION_ID,
  Avp,
  avpName,
  Command,
  DisconnectCause,
  isKnownAvp,
  ResultCode,
} from './dictionary.js';
import type { DiameterServerConfig } from './config.js';
import { answerTo, capabilitiesExchangeRequest, deviceWatchdogRequest, disconnectPeerRequest, type LocalIdentity } from './base-messages.js';
import { createPendingTable, type AnswerResult } from './pending.js';
import { createWatchdog } from './watchdog.js';

export type { AnswerResult } from './pending.js';
export type { LocalIdentity } from './base-messages.js';

/** closed → connecting → wait-cea → open ⇄ suspect → (closing) → closed
 *  ("suspect" is RFC 3539's SUSPECT: a DWR went unanswered for Tw). */
export type PeerState = 'closed' | 'connecting' | 'wait-cea' | 'open' | 'suspect' | 'closing';

export interface PeerOptions {
  server: DiameterServerConfig;
  tls?: { ca: string; cert: string; key: string; server_name?: string };
  identity: LocalIdentity;
  watchdogMs: number;
  reconnectMaxMs: number;
  requestTimeoutMs: number;
  logger: Logger;
  nextEndToEnd: () => number;
  nextHopByHop: () => number;
  /** called on every state change, e.g. to move traffic to another peer */
  onStateChange: (peer: Peer) => void;
}

export interface Peer {
  /** host:port, for logs and status */
  readonly name: string;
  readonly state: PeerState;
  readonly inFlight: number;
  /** the server's Origin-Host from its CEA */
  readonly remoteHost: string | undefined;
  /** the last reason the connection was down, for `ubia status` */
  readonly lastError: string | undefined;
  start(): void;
  /** Sends an encoded request (its hop-by-hop id and T flag are set here); done is called
   *  exactly once: with the answer, on timeout, or when the connection is lost. */
  request(message: Buffer, retransmit: boolean, done: (result: AnswerResult) => void): void;
  /** DPR/DPA (RFC 6733 §5.4) when open, then closes for good. */
  stop(): Promise<void>;
}

const BACKOFF_START_MS = 1000;

export function createPeer(opts: PeerOptions): Peer {
  const { server, logger, identity } = opts;
  const port = server.port ?? (server.transport === 'tls' ? 5658 : 3868);
  const name = `${server.host}:${port}`;
  const log = logger.child({ peer: name });
  const tlsFiles = server.transport === 'tls' ? loadTlsFiles(opts.tls, name) : undefined;

  let state: PeerState = 'closed';
  let socket: net.Socket | undefined;
  let stopped = false;
  let remoteHost: string | undefined;
  let lastError: string | undefined;
  let backoffMs = BACKOFF_START_MS;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let corked = false;
  let reconnectAfterMs: number | undefined;
  let onClosed: (() => void) | undefined;
  const pending = createPendingTable({ timeoutMs: opts.requestTimeoutMs, nextHopByHop: opts.nextHopByHop });
  const watchdog = createWatchdog(opts.watchdogMs, {
    sendDwr: () =>
      // RFC 6733 §5.5.1; the answer is seen in onMessage, a lost one is what the watchdog catches
      send(deviceWatchdogRequest(identity, opts.nextEndToEnd()), false, () => undefined),
    suspect: () => {
      log.warn('diameter: DWR unanswered, peer suspect; moving requests to another peer');
      setState('suspect');
      pending.failAll('peer suspect (RFC 3539)');
      pending.startTimeouts();
    },
    recovered: () => {
      log.info('diameter: DWA received, peer open again');
      setState('open');
    },
    dead: (idleMs) => drop(`no answer to a DWR for ${Math.round(idleMs / 1000)} s (RFC 3539 watchdog)`),
  });

  function setState(next: PeerState): void {
    if (next === state) return;
    state = next;
    opts.onStateChange(peer);
  }

  function connect(): void {
    reconnectTimer = undefined;
    if (stopped) return;
    setState('connecting');
    // messages still cut from a chunk after the connection was dropped are not ours any more
    const framer = createFramer((m) => socket === s && onMessage(m), (err) => {
      log.error({ err: err.message }, 'diameter: stream from peer out of step, closing the connection');
      drop(`framing error: ${err.message}`);
    });
    const s = tlsFiles
      ? tls.connect({
          host: server.host,
          port,
          ...tlsFiles,
          // SNI takes names only (RFC 6066 §3); an address is checked against the certificate's IP SANs
          servername: opts.tls?.server_name ?? (net.isIP(server.host) ? undefined : server.host),
        })
      : net.connect({ host: server.host, port });
    socket = s;
    s.setNoDelay(true);
    const connectTimer = setTimeout(() => socket === s && drop('connect timed out'), opts.requestTimeoutMs);
    s.once(tlsFiles ? 'secureConnect' : 'connect', () => {
      clearTimeout(connectTimer);
      // the CER, like every request, is bounded by the request timeout
      pending.startTimeouts();
      setState('wait-cea');
      send(capabilitiesExchangeRequest(identity, s.localAddress ?? '127.0.0.1', opts.nextEndToEnd()), false, (r) => onCea(r));
    });
    s.on('data', (chunk: Buffer) => framer.push(chunk));
    s.on('error', (err) => {
      clearTimeout(connectTimer);
      if (socket === s) drop(err.message);
    });
    s.on('close', () => {
      clearTimeout(connectTimer);
      if (socket === s) drop('connection closed by peer');
    });
  }

  function onCea(r: AnswerResult): void {
    if (!r.ok) return drop(`no usable CEA: ${r.detail}`);
    const code = resultCodeOf(r.answer);
    const host = findAvp(r.answer.avps, Avp.OriginHost);
    remoteHost = host ? readUtf8(host) : undefined;
    if (code !== ResultCode.Success) return drop(`CEA refused the capabilities exchange with Result-Code ${code}`, true);
    if (server.identity && remoteHost !== server.identity) {
      return drop(`CEA Origin-Host is ${remoteHost}, expected ${server.identity}`, true);
    }
    // RFC 6733 §5.3: the peer must share an application with us, or be a relay (0xffffffff)
    const apps = r.answer.avps.filter((a) => a.code === Avp.AcctApplicationId || a.code === Avp.AuthApplicationId).map(readU32);
    if (!apps.includes(ACCOUNTING_APPLICATION_ID) && !apps.includes(0xffffffff)) {
      return drop(`peer ${remoteHost} does not support base accounting (Acct-Application-Id 3)`, true);
    }
    backoffMs = BACKOFF_START_MS;
    lastError = undefined;
    watchdog.start();
    log.info({ remoteHost }, 'diameter: peer open');
    setState('open');
  }

  function send(message: Buffer, retransmit: boolean, done: (r: AnswerResult) => void): void {
    if (!socket) return done({ ok: false, reason: 'disconnected', detail: `peer ${name} is ${state}` });
    pending.add(message, retransmit, done);
    // batch the writes of one event-loop turn into as few segments as possible
    if (!corked) {
      corked = true;
      socket.cork();
      const s = socket;
      process.nextTick(() => {
        corked = false;
        s.uncork();
      });
    }
    socket.write(message);
  }

  function answer(request: DiameterMessage, resultCode: number, extra: Buffer[] = []): void {
    socket?.write(answerTo(request, identity, resultCode, extra));
  }

  function onMessage(buf: Buffer): void {
    watchdog.heard();
    const isRequest = (buf[4]! & Flag.Request) !== 0;
    let msg: DiameterMessage;
    try {
      msg = decodeMessage(buf);
      // RFC 6733 §4.1: a message with an unrecognised AVP that has the M bit set is rejected
      const unknown = msg.avps.find((a) => a.flags & AvpFlag.Mandatory && !isKnownAvp(a.code, a.vendorId));
      if (unknown) {
        throw new DiameterDecodeError(
          `unrecognised mandatory ${avpName(unknown.code, unknown.vendorId)} (M bit set, RFC 6733 §4.1)`,
          ResultCode.AvpUnsupported,
          encodeAvp(unknown.code, unknown.data, { vendorId: unknown.vendorId }),
        );
      }
    } catch (e) {
      if (!(e instanceof DiameterDecodeError)) throw e;
      return onBadMessage(buf, isRequest, e);
    }
    if (isRequest) return onRequest(msg);
    const p = pending.take(msg.hopByHop);
    if (!p) {
      // RFC 6733 §6.2: an answer matching no pending request is discarded
      log.warn({ hopByHop: msg.hopByHop, command: msg.commandCode }, 'diameter: answer for no pending request (late or unknown), discarded');
      return;
    }
    if (msg.commandCode === Command.DeviceWatchdog) watchdog.dwaReceived();
    p.done({ ok: true, answer: msg });
  }

  function onBadMessage(buf: Buffer, isRequest: boolean, err: DiameterDecodeError): void {
    const hbh = buf.readUInt32BE(12);
    if (isRequest) {
      log.warn({ err: err.message, resultCode: err.resultCode }, 'diameter: malformed request from peer, answered with an error');
      const header = { flags: buf[4]!, commandCode: buf.readUInt32BE(4) & 0xffffff, applicationId: buf.readUInt32BE(8), hopByHop: hbh, endToEnd: buf.readUInt32BE(16), avps: [] };
      answer(header, err.resultCode, err.failedAvp ? [encodeAvp(Avp.FailedAvp, err.failedAvp)] : []);
      return;
    }
    const p = pending.take(hbh);
    log.warn({ err: err.message, hopByHop: hbh }, 'diameter: malformed answer rejected; its request will be retried');
    if (!p) return;
    if (p.commandCode === Command.DeviceWatchdog) watchdog.dwaMalformed();
    p.done({ ok: false, reason: 'malformed', detail: err.message });
  }

  function onRequest(msg: DiameterMessage): void {
    switch (msg.commandCode) {
      case Command.DeviceWatchdog: // RFC 6733 §5.5.2
        return answer(msg, ResultCode.Success, [avpU32(Avp.OriginStateId, identity.originStateId)]);
      case Command.DisconnectPeer: {
        // RFC 6733 §5.4: answer, then the initiator of the DPR closes; wait before returning
        const causeAvp = findAvp(msg.avps, Avp.DisconnectCause);
        const cause = causeAvp ? readU32(causeAvp) : DisconnectCause.Rebooting;
        log.warn({ cause }, 'diameter: peer sent DPR, disconnecting');
        answer(msg, ResultCode.Success);
        reconnectAfterMs = cause === DisconnectCause.Rebooting ? BACKOFF_START_MS : opts.reconnectMaxMs;
        setState('closing');
        const s = socket;
        setTimeout(() => socket === s && drop('peer sent DPR and did not close'), Math.min(opts.requestTimeoutMs, 5000)).unref();
        return;
      }
      default:
        // RFC 6733 §7.1.3 (3001 DIAMETER_COMMAND_UNSUPPORTED)
        log.warn({ command: msg.commandCode }, 'diameter: unsupported request from peer, answered 3001');
        return answer(msg, 3001);
    }
  }

  /** Tears the connection down and, unless stopped, schedules the next attempt. */
  function drop(reason: string, refused = false): void {
    // pending.failAll below settles the CER too, whose callback drops again: the first reason
    // stands, and only one reconnection is scheduled (two would orphan a socket each time)
    if (!socket && state === 'closed') return;
    const s = socket;
    socket = undefined;
    watchdog.stop();
    if (s) {
      s.removeAllListeners('data');
      s.on('error', () => undefined);
      s.destroy();
    }
    const wasUp = state === 'open' || state === 'suspect' || state === 'closing';
    if (!stopped && (wasUp || lastError !== reason)) {
      (refused ? log.error.bind(log) : log.warn.bind(log))({ reason }, wasUp ? 'diameter: peer connection lost' : 'diameter: cannot connect to peer, will retry');
    }
    if (!stopped) lastError = reason;
    setState('closed');
    pending.failAll(`connection to ${name} lost: ${reason}`);
    if (onClosed) return onClosed();
    if (stopped) return;
    const delay = reconnectAfterMs ?? (refused ? opts.reconnectMaxMs : backoffMs);
    reconnectAfterMs = undefined;
    backoffMs = Math.min(backoffMs * 2, opts.reconnectMaxMs);
    reconnectTimer = setTimeout(connect, delay);
  }

  const peer: Peer = {
    name,
    get state() {
      return state;
    },
    get inFlight() {
      return pending.size;
    },
    get remoteHost() {
      return remoteHost;
    },
    get lastError() {
      return lastError;
    },
    start(): void {
      if (!reconnectTimer && state === 'closed' && !stopped) connect();
    },
    request(message, retransmit, done): void {
      if (state !== 'open') return done({ ok: false, reason: 'disconnected', detail: `peer ${name} is ${state}` });
      send(message, retransmit, done);
    },
    stop(): Promise<void> {
      stopped = true;
      clearTimeout(reconnectTimer);
      if (state !== 'open' && state !== 'suspect') {
        drop('stopped');
        return Promise.resolve();
      }
      return new Promise((resolve) => {
        const timer = setTimeout(() => drop('no DPA in time'), Math.min(opts.requestTimeoutMs, 5000));
        onClosed = () => {
          clearTimeout(timer);
          onClosed = undefined;
          resolve();
        };
        setState('closing');
        send(
          disconnectPeerRequest(identity, DisconnectCause.Rebooting, opts.nextEndToEnd()),
          false,
          () => drop('DPA received, disconnected'), // RFC 6733 §5.4: the DPR sender closes
        );
      });
    },
  };
  return peer;
}

/** The Result-Code of an answer, or undefined when it has none (then it is malformed). */
export function resultCodeOf(answer: DiameterMessage): number | undefined {
  const avp = findAvp(answer.avps, Avp.ResultCode);
  return avp ? readU32(avp) : undefined;
}

function loadTlsFiles(files: PeerOptions['tls'], name: string): { ca: Buffer; cert: Buffer; key: Buffer } {
  if (!files) throw new Error(`diameter server ${name} uses TLS: add a [diameter.tls] section with ca, cert and key`);
  const read = (key: 'ca' | 'cert' | 'key', path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new Error(`diameter TLS file ${path} cannot be read (${(e as Error).message}): fix [diameter.tls] ${key} in the config, or the file's permissions`);
    }
  };
  return { ca: read('ca', files.ca), cert: read('cert', files.cert), key: read('key', files.key) };
}
