// UDP transport: templates at start and again once template_refresh has passed (RFC 7011
// §8.4), every message under the configured size, one message per burst of records.
import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { createUdpStream } from '../src/export/ipfix/udp.js';
import { freePort } from './support/testbed.js';
import { waitFor } from './support/wait.js';
import { silentLogger, udpSink } from './support/ipfix.js';

const TEMPLATE_SET = Buffer.from('00020010' + '01000002' + '00080004' + '00010008', 'hex');
const record = (i: number) => Buffer.from(`c00002${(i & 0xff).toString(16).padStart(2, '0')}00000000000003e8`, 'hex');

/** Set IDs of each set in a message (RFC 7011 §3.3.2). */
function setIds(msg: Buffer): number[] {
  const ids: number[] = [];
  for (let off = 16; off < msg.readUInt16BE(2); off += msg.readUInt16BE(off + 2)) ids.push(msg.readUInt16BE(off));
  return ids;
}

const tick = () => new Promise((r) => setImmediate(r));

describe('IPFIX over UDP', () => {
  it('re-sends templates when template_refresh has passed, and keeps messages under the limit', async () => {
    const port = await freePort();
    const sink = await udpSink(port);
    let now = 1_000_000;
    const stream = createUdpStream({ host: '127.0.0.1', port, maxMessageBytes: 256, templateRefreshMs: 600_000, templateSet: TEMPLATE_SET, observationDomainId: 1, logger: silentLogger, now: () => now });
    try {
      for (let i = 0; i < 40; i++) stream.send(256, record(i)); // 40 × 12 bytes need three 256-byte messages
      await tick();
      now += 599_999;
      stream.send(256, record(40));
      await tick();
      now += 1;
      stream.send(256, record(41));
      await tick();
      await waitFor('five datagrams', () => sink.datagrams.length === 5, 5000);
      expect(sink.datagrams.map(setIds)).toEqual([[2, 256], [256], [256], [256], [2, 256]]);
      expect(sink.datagrams.every((d) => d.length <= 256)).toBe(true);
      expect(sink.datagrams.map((d) => d.readUInt32BE(8))).toEqual([0, 18, 37, 40, 41]); // records before each message
      expect(stream.status()).toMatchObject({ state: 'ok', sent: 42, messages: 5, dropped: 0, sequence: 42 });
    } finally {
      await stream.close(1000);
      await sink.close();
    }
  });

  it('sends to an IPv6 collector', async () => {
    const receiver = createSocket('udp6');
    const got: Buffer[] = [];
    receiver.on('message', (m) => got.push(m));
    await new Promise<void>((r) => receiver.bind(0, '::1', r));
    const stream = createUdpStream({ host: '::1', port: receiver.address().port, maxMessageBytes: 1400, templateRefreshMs: 600_000, templateSet: TEMPLATE_SET, observationDomainId: 9, logger: silentLogger });
    try {
      stream.send(256, record(1));
      await waitFor('the datagram on ::1', () => got.length === 1, 5000);
      expect(setIds(got[0]!)).toEqual([2, 256]);
      expect(got[0]!.readUInt32BE(12)).toBe(9);
    } finally {
      await stream.close(1000);
      receiver.close();
    }
  });
});
