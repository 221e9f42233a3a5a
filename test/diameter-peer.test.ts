// The Diameter peer connection against a scripted server (RFC 6733): request timeouts and
// the watchdog (§5.5), the server's DWR and DPR, the CER's AVPs and the DPR on close.
import { afterEach, describe, expect, it } from 'vitest';
import { avpU32, avpUtf8, encodeMessage, Flag } from '../src/export/diameter/codec.js';
import { Avp, Command } from '../src/export/diameter/dictionary.js';
import { closeScripted, delivered, exporter, reference, scriptedServer, startUsers } from './support/diameter-server.js';
import { waitFor } from './support/wait.js';

afterEach(closeScripted);

describe('Diameter peer connection against a scripted server', () => {
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
    expect(acct.status().peers![0]!.state).toBe('closed');
  });

});
