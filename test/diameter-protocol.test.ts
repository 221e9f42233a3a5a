// Protocol corner cases a real AAA server will not produce on demand: a scripted server on
// loopback answers the exporter's ACRs with malformed answers, unknown AVPs, error
// Result-Codes, or silence. What ubia sends is decoded by the npm `diameter` package (an
// independent decoder); what the scripted server sends is built byte by byte here.
import { afterEach, describe, expect, it, onTestFailed } from 'vitest';
import { avpAddress, avpU32, avpUtf8, createFramer, createIdSequence, encodeAvp, encodeMessage, Flag } from '../src/export/diameter/codec.js';
import { buildAcr } from '../src/export/diameter/acr.js';
import { Avp, RecordType } from '../src/export/diameter/dictionary.js';
import { answer, closeScripted, delivered, exporter, reference, scriptedServer, spoilFirstSend, startUsers } from './support/diameter-server.js';
import { waitFor } from './support/wait.js';

afterEach(closeScripted);

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

});
