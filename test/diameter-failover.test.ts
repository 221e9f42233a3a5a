// Reconnection and failover against scripted servers (RFC 6733 §2.1, RFC 3539 Tc), and the
// Acct-Interim-Interval a server returns (§9.8.2).
import { afterEach, describe, expect, it } from 'vitest';
import { avpU32 } from '../src/export/diameter/codec.js';
import { Avp } from '../src/export/diameter/dictionary.js';
import { answer, closeScripted, delivered, exporter, scriptedServer, startUsers } from './support/diameter-server.js';
import { waitFor } from './support/wait.js';

afterEach(closeScripted);

describe('Diameter reconnection and failover against scripted servers', () => {
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
    await waitFor('both open', () => acct.status().peers!.every((p) => p.state === 'open'), 5000);
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
