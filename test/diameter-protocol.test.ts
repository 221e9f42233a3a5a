// Protocol corner cases a real AAA server will not produce on demand: a scripted server on
// loopback answers the exporter's ACRs with malformed answers, unknown AVPs, error
// Result-Codes, or silence. What ubia sends is decoded by the npm `diameter` package (an
// independent decoder); what the scripted server sends is built byte by byte here.
import { createRequire } from 'node:module';
import net from 'node:net';
import { afterEach, describe, expect, it, onTestFailed } from 'vitest';
import {
  avpAddress,
  avpU32,
  avpUtf8,
  createFramer,
  createIdSequence,
  encodeAvp,
  encodeMessage,
  Flag,
} from '../src/export/diameter/codec.js';
import { buildAcr } from '../src/export/diameter/acr.js';
import { Avp, Command, RecordType } from '../src/export/diameter/dictionary.js';
import { createDiameterAccounting, type DiameterAccounting } from '../src/export/diameter/index.js';
import { memoryLogger, tempLedger, testConfig, usage, type LogLine } from './peers/freediameter/client.js';
import { waitFor } from './support/wait.js';

const require = createRequire(import.meta.url);
// the npm `diameter` package's codec, as a second, independent decoder
const reference = require('diameter/lib/diameter-codec.js') as {
  decodeMessage(b: Buffer): {
    header: { commandCode: number; flags: { request: boolean; potentiallyRetransmitted: boolean }; hopByHopId: number; endToEndId: number };
    body: [string, unknown][];
  };
};

interface Request {
  command: number;
  retransmit: boolean;
  hopByHop: number;
  endToEnd: number;
  avps: Map<string, unknown>;
  raw: Buffer;
}

type AcrBehaviour = (req: Request, socket: net.Socket) => void;

interface ScriptedServer {
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
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  for (const s of servers.splice(0)) await s.close();
});

function answer(req: Request, resultCode: number | undefined, extra: Buffer[] = [], flags: number = Flag.Proxiable): Buffer {
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

const RECORD_TYPES: Record<string, number> = { 'Event Record': 1, 'Start Record': 2, 'Interim Record': 3, 'Stop Record': 4 };
const recordTypeCode = (req: Request): number => RECORD_TYPES[String(req.avps.get('Accounting-Record-Type'))] ?? 0;
const ok: AcrBehaviour = (req, socket) => socket.write(answer(req, 2001));
/** The first send of each ACR gets a 2001 ACA spoiled by `spoil`; a re-send (T) a good one. */
const spoilFirstSend =
  (spoil: (aca: Buffer) => void): AcrBehaviour =>
  (req, socket) => {
    const aca = answer(req, 2001);
    if (!req.retransmit) spoil(aca);
    socket.write(aca);
  };

async function scriptedServer(): Promise<ScriptedServer> {
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

function exporter(ports: number[], overrides: Parameters<typeof testConfig>[1] = {}): { acct: DiameterAccounting; lines: LogLine[] } {
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
function startUsers(acct: DiameterAccounting, n: number, firstUid = 1000): void {
  const now = Date.now();
  acct.usage(usage(now - 1000, now, Array.from({ length: n }, (_, k) => ({ uid: firstUid + k, user: `user${k}`, txBytes: 100 + k, rxBytes: 200, txPackets: 1, rxPackets: 2 }))));
}

const delivered = (acct: DiameterAccounting): boolean => acct.status().queued === 0 && acct.status().extra!.inFlight === 0;

describe('Diameter codec', () => {
  it('an ACR decodes with the npm diameter package to the values put in, Unsigned64 past 2^32 included', () => {
    const big = 2 ** 40 + 12345;
    const acr = buildAcr({
      sessionId: 'agent.test.local;1;2;ubia-1000',
      originHost: 'agent.test.local',
      originRealm: 'test.local',
      destinationRealm: 'aaa.realm',
      destinationHost: 'aaa.test.local',
      recordType: RecordType.Interim,
      recordNumber: 7,
      userName: 'zoë',
      nasIdentifier: 'agent',
      eventMs: Date.UTC(2026, 0, 2, 3, 4, 5),
      inputOctets: big,
      outputOctets: 2 ** 32,
      inputPackets: 2 ** 53 - 1,
      outputPackets: 0,
      sessionTimeS: 600,
      interimIntervalS: 300,
      endToEnd: 0xfffffffe,
    });
    const m = reference.decodeMessage(acr);
    expect(m.header.commandCode).toBe(271);
    expect(m.header.flags.request).toBe(true);
    expect(m.header.endToEndId).toBe(0xfffffffe);
    expect(m.body[0]![0]).toBe('Session-Id'); // RFC 6733 §9.7.1: first
    const avps = new Map(m.body);
    const u64 = (name: string): string => String((avps.get(name) as { toString(): string }).toString());
    expect(avps.get('Accounting-Record-Type')).toBe('Interim Record');
    expect(avps.get('Accounting-Record-Number')).toBe(7);
    expect(avps.get('User-Name')).toBe('zoë');
    expect(avps.get('Destination-Host')).toBe('aaa.test.local');
    expect(avps.get('Acct-Application-Id')).toBe('Diameter Base Accounting');
    expect(u64('Accounting-Input-Octets')).toBe(String(big));
    expect(u64('Accounting-Output-Octets')).toBe(String(2 ** 32));
    expect(u64('Accounting-Input-Packets')).toBe(String(2 ** 53 - 1));
    // Time (RFC 6733 §4.3.1): seconds since 1900-01-01; the package hands back the raw number
    expect(avps.get('Event-Timestamp')).toBe(Date.UTC(2026, 0, 2, 3, 4, 5) / 1000 + 2_208_988_800);
    expect(avps.get('Acct-Session-Time')).toBe(600);
    expect(avps.get('NAS-Identifier')).toBe('agent');
  });

  it('Address AVPs (RFC 6733 §4.3.1) for IPv4 and IPv6', () => {
    const data = (ip: string): string => avpAddress(257, ip).subarray(8, 8 + (ip.includes(':') ? 18 : 6)).toString('hex');
    expect(data('127.0.0.1')).toBe('00017f000001');
    expect(data('::1')).toBe('0002' + '0'.repeat(31) + '1');
    expect(data('2001:db8::ffff:1.2.3.4')).toBe('000220010db8000000000000ffff01020304');
    expect(data('fe80::1:2')).toBe('0002' + 'fe80' + '0000'.repeat(5) + '00010002');
  });

  it('identifiers wrap at 2^32', () => {
    const next = createIdSequence(0xfffffffe);
    expect([next(), next(), next(), next()]).toEqual([0xfffffffe, 0xffffffff, 0, 1]);
  });

  it('the framer cuts coalesced and split messages alike', () => {
    const msgs = Array.from({ length: 50 }, (_, i) =>
      encodeMessage({ flags: 0, commandCode: 271, applicationId: 3, hopByHop: i, endToEnd: i }, [avpUtf8(Avp.SessionId, 'x'.repeat(i))]),
    );
    const stream = Buffer.concat(msgs);
    for (const cut of [stream.length, 1, 3, 7, 64, 1000]) {
      const got: number[] = [];
      const framer = createFramer((m) => got.push(m.readUInt32BE(12)), (e) => expect.fail(e.message));
      for (let at = 0; at < stream.length; at += cut) framer.push(stream.subarray(at, at + cut));
      expect(got).toEqual(msgs.map((_, i) => i));
      expect(framer.buffered).toBe(0);
    }
    const errors: string[] = [];
    createFramer(() => expect.fail('no message'), (e) => errors.push(e.message)).push(Buffer.from([2, 0, 0, 20]));
    expect(errors[0]).toMatch(/version 2/);
  });
});

describe('Diameter client against a scripted server', () => {
  it('answers coalesced into one write and answers split byte by byte are all matched', async () => {
    const srv = await scriptedServer();
    const held: Buffer[] = [];
    srv.onAcr = (req, socket) => {
      held.push(answer(req, 2001));
      if (held.length === 20) socket.write(Buffer.concat(held.splice(0))); // 20 ACAs in one segment
    };
    const { acct } = exporter([srv.port]);
    await waitFor('open', () => acct.status().state === 'ok', 5000);
    startUsers(acct, 20);
    await waitFor('20 ACRs delivered', () => delivered(acct), 5000);

    // one byte per write, 1 ms apart, answers one after the other
    const drip: number[] = [];
    srv.onAcr = (req, socket) => {
      const start = drip.length === 0;
      drip.push(...answer(req, 2001));
      const step = (): void => {
        if (drip.length && !socket.destroyed) {
          socket.write(Buffer.from([drip.shift()!]));
          setTimeout(step, 1);
        }
      };
      if (start) step();
    };
    startUsers(acct, 3, 2000);
    await waitFor('3 ACRs delivered byte by byte', () => delivered(acct), 10_000);
    expect(srv.connections).toBe(1);
    expect(srv.acrs.every((r) => !r.retransmit)).toBe(true);
  });

  it('unknown AVPs: without the M bit ignored; with the M bit the ACA is rejected and the ACR re-sent with T', async () => {
    const srv = await scriptedServer();
    srv.onAcr = (req, socket) => {
      const user = String(req.avps.get('User-Name'));
      if (user === 'user0') return void socket.write(answer(req, 2001, [encodeAvp(99_999, Buffer.from('hi'), { mandatory: false })]));
      if (!req.retransmit) return void socket.write(answer(req, 2001, [encodeAvp(99_998, Buffer.from('must'), { mandatory: true })]));
      socket.write(answer(req, 2001));
    };
    const { acct, lines } = exporter([srv.port]);
    await waitFor('open', () => acct.status().state === 'ok', 5000);
    startUsers(acct, 2);
    await waitFor('both delivered', () => delivered(acct), 10_000);
    expect(srv.acrs.map((r) => [r.avps.get('User-Name'), r.retransmit])).toEqual([
      ['user0', false],
      ['user1', false],
      ['user1', true],
    ]);
    expect(lines.some((l) => /unrecognised mandatory AVP\(99998\)/.test(String(l.err)))).toBe(true);
    expect(srv.connections).toBe(1);
  });

  it('a malformed answer does not wedge the connection: the ACR is retried and delivered', async () => {
    const srv = await scriptedServer();
    // the first AVP's length overruns the message
    srv.onAcr = spoilFirstSend((aca) => aca.writeUInt32BE((aca.readUInt32BE(20 + 4) & 0xff000000) | 0xfff0, 20 + 4));
    const { acct, lines } = exporter([srv.port]);
    onTestFailed(() => console.log(srv.acrs.map((r) => [r.avps.get('User-Name'), r.retransmit, r.raw[4]])));
    await waitFor('open', () => acct.status().state === 'ok', 5000);
    startUsers(acct, 3);
    await waitFor('delivered after retry', () => delivered(acct), 10_000);
    expect(srv.acrs.filter((r) => r.retransmit).length).toBe(3);
    expect(lines.some((l) => /malformed answer rejected/.test(l.msg) && /outside its message/.test(String(l.err)))).toBe(true);
    expect(srv.connections).toBe(1);
  });

  it('a stream out of step (a header no Diameter message has) closes the connection; the ACR goes again on the next one', async () => {
    const srv = await scriptedServer();
    // version 2: no way to find where the next message starts (RFC 6733 §3)
    srv.onAcr = spoilFirstSend((aca) => (aca[0] = 2));
    const { acct, lines } = exporter([srv.port]);
    await waitFor('open', () => acct.status().state === 'ok', 5000);
    startUsers(acct, 1);
    await waitFor('delivered on a new connection', () => delivered(acct), 10_000);
    expect(srv.connections).toBe(2);
    expect(srv.acrs.map((r) => r.retransmit)).toEqual([false, true]);
    expect(lines.some((l) => /stream from peer out of step/.test(l.msg) && /version 2/.test(String(l.err)))).toBe(true);
  });

  it('Result-Codes: 5xxx rejected for good with the Failed-AVP named; 3xxx and 4xxx retried; no Result-Code retried', async () => {
    const srv = await scriptedServer();
    srv.onAcr = (req, socket) => {
      const user = String(req.avps.get('User-Name'));
      if (user === 'user0') {
        const failed = encodeAvp(Avp.FailedAvp, avpU32(Avp.AccountingRecordNumber, 0));
        return void socket.write(answer(req, 5004, [avpUtf8(Avp.ErrorMessage, 'bad record number'), failed]));
      }
      if (req.retransmit) return void socket.write(answer(req, 2001));
      if (user === 'user1') return void socket.write(answer(req, 4002));
      if (user === 'user2') return void socket.write(answer(req, 3004, [], Flag.Proxiable | Flag.Error));
      socket.write(answer(req, undefined));
    };
    const { acct, lines } = exporter([srv.port]);
    await waitFor('open', () => acct.status().state === 'ok', 5000);
    startUsers(acct, 4);
    await waitFor('settled', () => delivered(acct), 10_000);
    const status = acct.status();
    expect(status.dropped).toBe(1);
    expect(status.extra!.rejected).toBe(1);
    const rejection = lines.find((l) => /rejected an ACR for good/.test(l.msg))!;
    expect(rejection.resultCode).toBe(5004);
    expect(String(rejection.detail)).toContain('Failed-AVP AccountingRecordNumber(485)');
    expect(String(rejection.detail)).toContain('bad record number');
    expect(srv.acrs.filter((r) => r.retransmit).map((r) => r.avps.get('User-Name')).sort()).toEqual(['user1', 'user2', 'user3']);
    expect(lines.some((l) => /transient Result-Code 4002/.test(l.msg))).toBe(true);
    expect(lines.some((l) => /transient Result-Code 3004/.test(l.msg))).toBe(true);
    expect(lines.some((l) => /without a Result-Code/.test(l.msg))).toBe(true);
  });

  it('a silent server: requests time out and free their state, the watchdog drops the peer, records arrive after it answers again', async () => {
    const srv = await scriptedServer();
    const { acct, lines } = exporter([srv.port], { request_timeout: 1, watchdog_interval: 3 });
    await waitFor('open', () => acct.status().state === 'ok', 5000);
    srv.silent = true;
    startUsers(acct, 5);
    await waitFor('requests timed out', () => lines.some((l) => /timeout answer/.test(l.msg)), 5000);
    expect(acct.status().extra!.inFlight).toBe(0);
    await waitFor('watchdog gave up on the peer', () => lines.some((l) => /peer connection lost/.test(l.msg)), 15_000);
    expect(lines.some((l) => /peer suspect/.test(l.msg))).toBe(true);
    srv.silent = false;
    await waitFor('delivered after the server came back', () => delivered(acct), 15_000);
    expect(srv.connections).toBeGreaterThanOrEqual(2);
    const answered = new Map(srv.acrs.map((r) => [String(r.avps.get('Session-Id')), r]));
    expect(answered.size).toBe(5);
    expect([...answered.values()].every((r) => r.retransmit)).toBe(true);
  });

  it('answers the server\'s DWR, and its DPR, then reconnects', async () => {
    const srv = await scriptedServer();
    const { acct } = exporter([srv.port]);
    await waitFor('open', () => acct.status().state === 'ok', 5000);
    const socket = [...srv.sockets][0]!;
    const got: Buffer[] = [];
    socket.on('data', (b: Buffer) => got.push(b));
    const request = (command: number, extra: Buffer[]): Buffer =>
      encodeMessage({ flags: Flag.Request, commandCode: command, applicationId: 0, hopByHop: 77, endToEnd: 88 }, [
        avpUtf8(Avp.OriginHost, 'scripted.test.local'),
        avpUtf8(Avp.OriginRealm, 'test.local'),
        ...extra,
      ]);
    socket.write(request(Command.DeviceWatchdog, []));
    await waitFor('DWA', () => got.length > 0, 3000);
    const dwa = reference.decodeMessage(Buffer.concat(got.splice(0)));
    expect([dwa.header.commandCode, dwa.header.flags.request, dwa.header.hopByHopId]).toEqual([280, false, 77]);
    expect(new Map(dwa.body).get('Result-Code')).toBe('DIAMETER_SUCCESS');
    socket.write(request(Command.DisconnectPeer, [avpU32(Avp.DisconnectCause, 0)]));
    await waitFor('DPA', () => got.length > 0, 3000);
    expect(reference.decodeMessage(Buffer.concat(got)).header.commandCode).toBe(282);
    socket.end(); // RFC 6733 §5.4: the DPR sender closes
    await waitFor('reconnected', () => srv.connections === 2 && acct.status().state === 'ok', 10_000);
  });

  it('CER carries the RFC 6733 §5.3.1 AVPs; close() sends the STOPs, then a DPR (§5.4)', async () => {
    const srv = await scriptedServer();
    const { acct } = exporter([srv.port], { vendor_id: 99, product_name: 'ubia-test' });
    await waitFor('open', () => acct.status().state === 'ok', 5000);
    const cer = srv.baseRequests.find((r) => r.command === Command.CapabilitiesExchange)!;
    expect(cer.avps.get('Origin-Host')).toBe('agent.test.local');
    expect(cer.avps.get('Origin-Realm')).toBe('test.local');
    expect(cer.avps.get('Host-IP-Address')).toBe('127.0.0.1');
    expect(cer.avps.get('Vendor-Id')).toBe(99);
    expect(cer.avps.get('Product-Name')).toBe('ubia-test');
    expect(cer.avps.get('Origin-State-Id')).toBeGreaterThan(0);
    expect(cer.avps.get('Acct-Application-Id')).toBe('Diameter Base Accounting');
    expect(cer.raw.readUInt32BE(8)).toBe(0); // base protocol application (§2.4)
    startUsers(acct, 2);
    await waitFor('2 STARTs delivered', () => delivered(acct), 5000);
    await acct.close();
    const types = srv.acrs.map((r) => r.avps.get('Accounting-Record-Type'));
    expect(types).toEqual(['Start Record', 'Start Record', 'Stop Record', 'Stop Record']);
    expect(srv.acrs.slice(2).map((r) => r.avps.get('Termination-Cause'))).toEqual(['DIAMETER_ADMINISTRATIVE', 'DIAMETER_ADMINISTRATIVE']);
    const dpr = srv.baseRequests.at(-1)!;
    expect(dpr.command).toBe(Command.DisconnectPeer);
    expect(dpr.avps.get('Disconnect-Cause')).toBe('REBOOTING');
    expect((acct.status().extra!.peers as { state: string }[])[0]!.state).toBe('closed');
  });

  it('reconnects with back-off from 1 s doubling up to Tc', async () => {
    const srv = await scriptedServer();
    srv.silent = true;
    // a server that takes the connection and closes it at once, before any CEA
    srv.onConnection = (socket) => socket.destroy();
    const { acct, lines } = exporter([srv.port], { reconnect_interval: 2 });
    await waitFor('4 connection attempts', () => srv.connections >= 4, 10_000);
    const gaps = srv.connectedAt.slice(1, 4).map((t, i) => (t - srv.connectedAt[i]!) / 1000);
    expect(gaps[0]).toBeGreaterThanOrEqual(0.9);
    expect(gaps[0]).toBeLessThan(1.6);
    for (const g of gaps.slice(1)) {
      expect(g).toBeGreaterThanOrEqual(1.9); // 2 s = Tc: the cap
      expect(g).toBeLessThan(2.6);
    }
    expect(acct.status().state).toBe('down');
    // a repeated failure is logged when its reason changes, not at every attempt
    // (closed by peer / ECONNRESET, depending on when the close meets the CER)
    expect(lines.filter((l) => /cannot connect to peer/.test(l.msg)).length).toBeLessThanOrEqual(2);
  });

  it('fails over to the secondary when the primary goes silent; re-sent requests carry T', async () => {
    const primary = await scriptedServer();
    const secondary = await scriptedServer();
    const { acct } = exporter([primary.port, secondary.port], { request_timeout: 5, watchdog_interval: 1 });
    await waitFor('both open', () => (acct.status().extra!.peers as { state: string }[]).every((p) => p.state === 'open'), 5000);
    primary.silent = true;
    startUsers(acct, 4);
    await waitFor('delivered through the secondary', () => delivered(acct), 10_000);
    expect(primary.acrs.length).toBe(0); // silent: never recorded
    expect(secondary.acrs.length).toBe(4);
    expect(secondary.acrs.every((r) => r.retransmit)).toBe(true);
    expect(acct.status().state).toBe('degraded');
    expect(acct.status().detail).toMatch(/failed over/);
    // every peer's state, for `ubia status`
    expect(acct.status().detail).toMatch(new RegExp(`peers: 127\\.0\\.0\\.1:${primary.port} (suspect|closed|connecting|wait-cea)\\b.*, 127\\.0\\.0\\.1:${secondary.port} open \\(scripted\\.test\\.local\\); outbox 0`));
  });

  it('honours the Acct-Interim-Interval the server returns in the ACA (RFC 6733 §9.8.2)', async () => {
    const srv = await scriptedServer();
    srv.onAcr = (req, socket) => socket.write(answer(req, 2001, [avpU32(Avp.AcctInterimInterval, 1)]));
    const { acct } = exporter([srv.port], { interim_interval: 3600 });
    await waitFor('open', () => acct.status().state === 'ok', 5000);
    startUsers(acct, 1);
    await waitFor('an INTERIM a second or so after the START', () => srv.acrs.some((r) => r.avps.get('Accounting-Record-Type') === 'Interim Record'), 5000);
    const interim = srv.acrs.find((r) => r.avps.get('Accounting-Record-Type') === 'Interim Record')!;
    expect(interim.avps.get('Acct-Interim-Interval')).toBe(1);
    expect(interim.avps.get('Accounting-Record-Number')).toBe(1);
  });
});
