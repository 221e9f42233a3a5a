// One Diameter peer connection as an initiator: the RFC 6733 §5.6 state machine (ubia
// only connects, never listens, so no election), the RFC 3539 watchdog, pending-request
// tracking with a per-request timeout, and reconnection with back-off up to Tc.
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import {
  avpAddress,
  avpU32,
  avpUtf8,
  createFramer,
  decodeMessage,
  encodeAvp,
  encodeMessage,
  findAvp,
  Flag,
  AvpFlag,
  readU32,
  readUtf8,
  stampRequest,
  DiameterDecodeError,
  type DiameterMessage,
} from './codec.js';
import {
  ACCOUNTING_APPLICATION_ID,
  Avp,
  avpName,
  BASE_APPLICATION_ID,
  Command,
  DisconnectCause,
  isKnownAvp,
  ResultCode,
} from './dictionary.js';
import type { DiameterServerConfig } from './config.js';

/** closed → connecting → wait-cea → open ⇄ suspect → (closing) → closed
 *  ("suspect" is RFC 3539's SUSPECT: a DWR went unanswered for Tw). */
export type PeerState = 'closed' | 'connecting' | 'wait-cea' | 'open' | 'suspect' | 'closing';

export type AnswerResult =
  | { ok: true; answer: DiameterMessage }
  | { ok: false; reason: 'timeout' | 'disconnected' | 'malformed'; detail: string };

export interface LocalIdentity {
  originHost: string;
  originRealm: string;
  vendorId: number;
  productName: string;
  originStateId: number;
}

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

interface Pending {
  done: (result: AnswerResult) => void;
  sentMs: number;
  commandCode: number;
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
  let watchdogTimer: NodeJS.Timeout | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  let lastReceivedMs = 0;
  let dwrOutstanding = false;
  let corked = false;
  let reconnectAfterMs: number | undefined;
  let onClosed: (() => void) | undefined;
  const pending = new Map<number, Pending>();

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
      sweepTimer ??= setInterval(sweepTimeouts, Math.min(1000, opts.requestTimeoutMs));
      setState('wait-cea');
      send(capabilitiesExchangeRequest(s.localAddress ?? '127.0.0.1'), false, (r) => onCea(r));
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

  function capabilitiesExchangeRequest(localAddress: string): Buffer {
    // RFC 6733 §5.3.1
    return encodeMessage(
      { flags: Flag.Request, commandCode: Command.CapabilitiesExchange, applicationId: BASE_APPLICATION_ID, hopByHop: 0, endToEnd: opts.nextEndToEnd() },
      [
        avpUtf8(Avp.OriginHost, identity.originHost),
        avpUtf8(Avp.OriginRealm, identity.originRealm),
        avpAddress(Avp.HostIpAddress, localAddress.replace(/^::ffff:(?=\d+\.)/, '')),
        avpU32(Avp.VendorId, identity.vendorId),
        avpUtf8(Avp.ProductName, identity.productName, false), // §5.3.7: M bit MUST NOT be set
        avpU32(Avp.OriginStateId, identity.originStateId),
        avpU32(Avp.AcctApplicationId, ACCOUNTING_APPLICATION_ID),
      ],
    );
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
    lastReceivedMs = Date.now();
    dwrOutstanding = false;
    armWatchdog();
    log.info({ remoteHost }, 'diameter: peer open');
    setState('open');
  }

  // RFC 3539 §3.4.1: Tw with jitter of up to ±2 s (scaled down for short test intervals)
  function twMs(): number {
    const jitter = Math.min(2000, opts.watchdogMs / 4);
    return opts.watchdogMs + (Math.random() * 2 - 1) * jitter;
  }

  function armWatchdog(): void {
    clearTimeout(watchdogTimer);
    watchdogTimer = setTimeout(onWatchdog, twMs());
  }

  function onWatchdog(): void {
    const idleMs = Date.now() - lastReceivedMs;
    if (!dwrOutstanding && idleMs < opts.watchdogMs) {
      watchdogTimer = setTimeout(onWatchdog, opts.watchdogMs - idleMs);
      return;
    }
    if (state === 'suspect') return drop(`no answer to a DWR for ${Math.round(idleMs / 1000)} s (RFC 3539 watchdog)`);
    if (dwrOutstanding) {
      log.warn('diameter: DWR unanswered, peer suspect; moving requests to another peer');
      setState('suspect');
      failPending('disconnected', 'peer suspect (RFC 3539)');
    } else {
      dwrOutstanding = true;
      send(
        encodeMessage(
          { flags: Flag.Request, commandCode: Command.DeviceWatchdog, applicationId: BASE_APPLICATION_ID, hopByHop: 0, endToEnd: opts.nextEndToEnd() },
          [avpUtf8(Avp.OriginHost, identity.originHost), avpUtf8(Avp.OriginRealm, identity.originRealm), avpU32(Avp.OriginStateId, identity.originStateId)],
        ),
        false,
        () => undefined, // the answer is seen in onMessage; a lost one is what the timer catches
      );
    }
    watchdogTimer = setTimeout(onWatchdog, twMs());
  }

  function sweepTimeouts(): void {
    // Map iteration is insertion (= send) order and the timeout is the same for all
    const limit = Date.now() - opts.requestTimeoutMs;
    for (const [hbh, p] of pending) {
      if (p.sentMs > limit) break;
      pending.delete(hbh);
      p.done({ ok: false, reason: 'timeout', detail: `no answer within ${opts.requestTimeoutMs / 1000} s` });
    }
  }

  function send(message: Buffer, retransmit: boolean, done: (r: AnswerResult) => void): void {
    if (!socket) return done({ ok: false, reason: 'disconnected', detail: `peer ${name} is ${state}` });
    let hbh = opts.nextHopByHop();
    while (pending.has(hbh)) hbh = opts.nextHopByHop(); // after a wrap, skip ids still in use
    stampRequest(message, hbh, retransmit);
    pending.set(hbh, { done, sentMs: Date.now(), commandCode: message.readUInt32BE(4) & 0xffffff });
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
    const flags = (request.flags & Flag.Proxiable) | (resultCode >= 3000 && resultCode < 4000 ? Flag.Error : 0);
    socket?.write(
      encodeMessage(
        { flags, commandCode: request.commandCode, applicationId: request.applicationId, hopByHop: request.hopByHop, endToEnd: request.endToEnd },
        [avpU32(Avp.ResultCode, resultCode), avpUtf8(Avp.OriginHost, identity.originHost), avpUtf8(Avp.OriginRealm, identity.originRealm), ...extra],
      ),
    );
  }

  function onMessage(buf: Buffer): void {
    lastReceivedMs = Date.now();
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
    const p = pending.get(msg.hopByHop);
    if (!p) {
      // RFC 6733 §6.2: an answer matching no pending request is discarded
      log.warn({ hopByHop: msg.hopByHop, command: msg.commandCode }, 'diameter: answer for no pending request (late or unknown), discarded');
      return;
    }
    pending.delete(msg.hopByHop);
    if (msg.commandCode === Command.DeviceWatchdog) {
      dwrOutstanding = false;
      if (state === 'suspect') {
        log.info('diameter: DWA received, peer open again');
        setState('open');
      }
    }
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
    const p = pending.get(hbh);
    log.warn({ err: err.message, hopByHop: hbh }, 'diameter: malformed answer rejected; its request will be retried');
    if (!p) return;
    pending.delete(hbh);
    if (p.commandCode === Command.DeviceWatchdog) dwrOutstanding = false; // the peer is alive
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

  function failPending(reason: 'disconnected', detail: string): void {
    const all = [...pending.values()];
    pending.clear();
    for (const p of all) p.done({ ok: false, reason, detail });
  }

  /** Tears the connection down and, unless stopped, schedules the next attempt. */
  function drop(reason: string, refused = false): void {
    // failPending below settles the CER too, whose callback drops again: the first reason
    // stands, and only one reconnection is scheduled (two would orphan a socket each time)
    if (!socket && state === 'closed') return;
    const s = socket;
    socket = undefined;
    clearTimeout(watchdogTimer);
    clearInterval(sweepTimer);
    sweepTimer = undefined;
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
    failPending('disconnected', `connection to ${name} lost: ${reason}`);
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
          encodeMessage(
            { flags: Flag.Request, commandCode: Command.DisconnectPeer, applicationId: BASE_APPLICATION_ID, hopByHop: 0, endToEnd: opts.nextEndToEnd() },
            [avpUtf8(Avp.OriginHost, identity.originHost), avpUtf8(Avp.OriginRealm, identity.originRealm), avpU32(Avp.DisconnectCause, DisconnectCause.Rebooting)],
          ),
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
