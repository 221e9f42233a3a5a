// The scripted Diameter server of the protocol tests: it answers the exporter's ACRs as a
// test scripts it (malformed answers, unknown AVPs, error Result-Codes, silence), built
// byte by byte; what ubia sends is decoded by the npm `diameter` package (an independent
// decoder). Also the exporter under test, wired to it.
import { createRequire } from 'node:module';
import net from 'node:net';
import { onTestFailed } from 'vitest';
import { avpU32, avpUtf8, createFramer, encodeMessage, Flag } from '../../src/export/diameter/codec.js';
import { Avp, Command } from '../../src/export/diameter/dictionary.js';
import { createDiameterAccounting, type DiameterAccounting } from '../../src/export/diameter/index.js';
import { memoryLogger, tempLedger, testConfig, usage, type LogLine } from '../peers/freediameter/client.js';

const require = createRequire(import.meta.url);
// the npm `diameter` package's codec, as a second, independent decoder
export const reference = require('diameter/lib/diameter-codec.js') as {
  decodeMessage(b: Buffer): {
    header: { commandCode: number; flags: { request: boolean; potentiallyRetransmitted: boolean }; hopByHopId: number; endToEndId: number };
    body: [string, unknown][];
  };
};

export interface Request {
  command: number;
  retransmit: boolean;
  hopByHop: number;
  endToEnd: number;
  avps: Map<string, unknown>;
  raw: Buffer;
}

export type AcrBehaviour = (req: Request, socket: net.Socket) => void;

export interface ScriptedServer {
  port: number;
  acrs: Request[];
  /** CER, DWR and DPR received */
  baseRequests: Request[];
  /** when each connection was accepted (ms) */
  connectedAt: number[];
  connections: number;
  sockets: Set<net.Socket>;
  /** what to do with each ACR; CER, DWR and DPR are answered normally unless `silent` */
  onAcr: AcrBehaviour;
  /** runs first for each accepted connection */
  onConnection: (socket: net.Socket) => void;
  silent: boolean;
  close(): Promise<void>;
}

const servers: ScriptedServer[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
/** Closes the exporters and servers a test made (each test file runs it afterEach). */
export async function closeScripted(): Promise<void> {
  for (const c of cleanups.splice(0)) await c();
  for (const s of servers.splice(0)) await s.close();
}

export function answer(req: Request, resultCode: number | undefined, extra: Buffer[] = [], flags: number = Flag.Proxiable): Buffer {
  const avps = [
    avpUtf8(Avp.SessionId, String(req.avps.get('Session-Id') ?? 'x')),
    ...(resultCode === undefined ? [] : [avpU32(Avp.ResultCode, resultCode)]),
    avpUtf8(Avp.OriginHost, 'scripted.test.local'),
    avpUtf8(Avp.OriginRealm, 'test.local'),
  ];
  if (req.command === Command.Accounting) {
    avps.push(avpU32(Avp.AccountingRecordType, recordTypeCode(req)), avpU32(Avp.AccountingRecordNumber, Number(req.avps.get('Accounting-Record-Number'))));
  }
  if (req.command === Command.CapabilitiesExchange) avps.splice(0, 1, avpU32(Avp.AcctApplicationId, 3));
  return encodeMessage({ flags, commandCode: req.command, applicationId: req.command === Command.Accounting ? 3 : 0, hopByHop: req.hopByHop, endToEnd: req.endToEnd }, [...avps, ...extra]);
}

export const RECORD_TYPES: Record<string, number> = { 'Event Record': 1, 'Start Record': 2, 'Interim Record': 3, 'Stop Record': 4 };
export const recordTypeCode = (req: Request): number => RECORD_TYPES[String(req.avps.get('Accounting-Record-Type'))] ?? 0;
export const ok: AcrBehaviour = (req, socket) => socket.write(answer(req, 2001));
/** The first send of each ACR gets a 2001 ACA spoiled by `spoil`; a re-send (T) a good one. */
export const spoilFirstSend =
  (spoil: (aca: Buffer) => void): AcrBehaviour =>
  (req, socket) => {
    const aca = answer(req, 2001);
    if (!req.retransmit) spoil(aca);
    socket.write(aca);
  };

export async function scriptedServer(): Promise<ScriptedServer> {
  const srv = net.createServer();
  const state: ScriptedServer = {
    port: 0,
    acrs: [],
    baseRequests: [],
    connectedAt: [],
    connections: 0,
    sockets: new Set(),
    onAcr: ok,
    onConnection: () => undefined,
    silent: false,
    close: () =>
      new Promise((resolve) => {
        for (const s of state.sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
  srv.on('connection', (socket) => {
    state.connections++;
    state.connectedAt.push(Date.now());
    state.sockets.add(socket);
    socket.on('close', () => state.sockets.delete(socket));
    socket.on('error', () => undefined);
    state.onConnection(socket);
    if (socket.destroyed) return;
    const framer = createFramer(
      (raw) => {
        const decoded = reference.decodeMessage(raw);
        if (!decoded.header.flags.request) return; // answers to our DWR/DPR
        const req: Request = {
          command: decoded.header.commandCode,
          retransmit: decoded.header.flags.potentiallyRetransmitted,
          hopByHop: decoded.header.hopByHopId,
          endToEnd: decoded.header.endToEndId,
          avps: new Map(decoded.body),
          raw,
        };
        if (state.silent) return;
        if (req.command === Command.Accounting) {
          state.acrs.push(req);
          state.onAcr(req, socket);
        } else {
          state.baseRequests.push(req);
          socket.write(answer(req, 2001));
          if (req.command === Command.DisconnectPeer) socket.end();
        }
      },
      () => socket.destroy(),
    );
    socket.on('data', (b: Buffer) => framer.push(b));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  state.port = (srv.address() as net.AddressInfo).port;
  servers.push(state);
  return state;
}

export function exporter(ports: number[], overrides: Parameters<typeof testConfig>[1] = {}): { acct: DiameterAccounting; lines: LogLine[] } {
  const ledger = tempLedger();
  const { logger, lines } = memoryLogger();
  onTestFailed(() => console.log(lines.map((l) => JSON.stringify(l)).join('\n')));
  const acct = createDiameterAccounting(
    testConfig(ports[0]!, { servers: ports.map((port) => ({ host: '127.0.0.1', port })), request_timeout: 2, reconnect_interval: 1, ...overrides }),
    { logger, db: ledger.db, hostName: 'agent' },
  );
  cleanups.push(async () => {
    await acct.close();
    ledger.dispose();
  });
  return { acct, lines };
}

/** One START per user, for `n` users. */
export function startUsers(acct: DiameterAccounting, n: number, firstUid = 1000): void {
  const now = Date.now();
  acct.usage(usage(now - 1000, now, Array.from({ length: n }, (_, k) => ({ uid: firstUid + k, user: `user${k}`, txBytes: 100 + k, rxBytes: 200, txPackets: 1, rxPackets: 2 }))));
}

export const delivered = (acct: DiameterAccounting): boolean => acct.status().queued === 0 && acct.status().extra!.inFlight === 0;
