// Diameter message and AVP encoding (RFC 6733 §3 header, §4 AVPs, §4.2-4.3 data formats)
// and the stream framer that cuts a TCP/TLS byte stream into whole messages.
import { isIP } from 'node:net';
import { ResultCode } from './dictionary.js';

export const HEADER_LENGTH = 20;
/** Largest message ubia accepts; answers to ACRs are a few hundred bytes. */
export const MAX_MESSAGE_LENGTH = 1 << 20;

/** Command flags (RFC 6733 §3). */
export const Flag = { Request: 0x80, Proxiable: 0x40, Error: 0x20, Retransmit: 0x10 } as const;
const COMMAND_FLAGS_RESERVED = 0x0f;
/** AVP flags (RFC 6733 §4.1). */
export const AvpFlag = { Vendor: 0x80, Mandatory: 0x40, Protected: 0x20 } as const;
const AVP_FLAGS_RESERVED = 0x1f;

export interface AvpValue {
  code: number;
  flags: number;
  vendorId: number;
  data: Buffer;
}

export interface DiameterMessage {
  flags: number;
  commandCode: number;
  applicationId: number;
  hopByHop: number;
  endToEnd: number;
  avps: AvpValue[];
}

/** A message that cannot be accepted; resultCode is what RFC 6733 §7.1 names for it, and
 *  failedAvp the offending AVP's bytes when there is one (for a Failed-AVP). */
export class DiameterDecodeError extends Error {
  constructor(
    message: string,
    readonly resultCode: number,
    readonly failedAvp?: Buffer,
  ) {
    super(message);
    this.name = 'DiameterDecodeError';
  }
}

const pad4 = (n: number): number => (n + 3) & ~3;

// ---- encoding -------------------------------------------------------------------------

export function encodeAvp(code: number, data: Buffer, opts: { mandatory?: boolean; vendorId?: number } = {}): Buffer {
  const vendor = opts.vendorId ?? 0;
  const headerLength = vendor ? 12 : 8;
  const length = headerLength + data.length;
  const out = Buffer.alloc(pad4(length));
  out.writeUInt32BE(code >>> 0, 0);
  out.writeUInt32BE(length, 4); // writes the 24-bit length; flags byte overwritten next
  out[4] = (vendor ? AvpFlag.Vendor : 0) | (opts.mandatory === false ? 0 : AvpFlag.Mandatory);
  if (vendor) out.writeUInt32BE(vendor >>> 0, 8);
  data.copy(out, headerLength);
  return out;
}

export const avpUtf8 = (code: number, value: string, mandatory = true): Buffer =>
  encodeAvp(code, Buffer.from(value, 'utf8'), { mandatory });

export function avpU32(code: number, value: number, mandatory = true): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return encodeAvp(code, b, { mandatory });
}

/** Unsigned64 (RFC 6733 §4.2): counters are JS numbers (exact to 2^53); go through
 *  BigInt so the high word is never lost to 32-bit arithmetic. */
export function avpU64(code: number, value: number | bigint, mandatory = true): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(value));
  return encodeAvp(code, b, { mandatory });
}

/** Address (RFC 6733 §4.3.1): 2-byte address family (IANA: 1 IPv4, 2 IPv6), then the address. */
export function avpAddress(code: number, ip: string, mandatory = true): Buffer {
  const family = isIP(ip);
  if (family === 4) {
    const b = Buffer.alloc(6);
    b.writeUInt16BE(1);
    ip.split('.').forEach((octet, i) => (b[2 + i] = Number(octet)));
    return encodeAvp(code, b, { mandatory });
  }
  if (family === 6) return encodeAvp(code, Buffer.concat([Buffer.from([0, 2]), ipv6Bytes(ip)]), { mandatory });
  throw new Error(`not an IP address: ${ip}`);
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail = ''] = ip.split('::');
  const groups = (s: string): string[] => (s ? s.split(':') : []);
  let h = groups(head!);
  let t = groups(ip.includes('::') ? tail : '');
  // an embedded IPv4 tail (::ffff:1.2.3.4) is two groups
  const last = (t.length ? t : h).at(-1);
  if (last?.includes('.')) {
    const v4 = last.split('.').map(Number);
    const extra = [((v4[0]! << 8) | v4[1]!).toString(16), ((v4[2]! << 8) | v4[3]!).toString(16)];
    if (t.length) t = [...t.slice(0, -1), ...extra];
    else h = [...h.slice(0, -1), ...extra];
  }
  const all = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  all.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

/** Seconds between the NTP epoch (1900) and the Unix epoch, for the Time format (§4.3.1). */
const NTP_UNIX_OFFSET = 2208988800;

export function avpTime(code: number, ms: number, mandatory = true): Buffer {
  const b = Buffer.alloc(4);
  // RFC 6733 §4.3.1: Time wraps in 2036; the value modulo 2^32 is what goes on the wire
  b.writeUInt32BE((Math.floor(ms / 1000) + NTP_UNIX_OFFSET) % 2 ** 32);
  return encodeAvp(code, b, { mandatory });
}

export function encodeMessage(header: Omit<DiameterMessage, 'avps'>, avps: Buffer[]): Buffer {
  let length = HEADER_LENGTH;
  for (const a of avps) length += a.length;
  const out = Buffer.allocUnsafe(length); // every byte is written below
  out.writeUInt32BE(length, 0);
  out[0] = 1; // version (§3)
  out.writeUInt32BE(header.commandCode, 4);
  out[4] = header.flags;
  out.writeUInt32BE(header.applicationId >>> 0, 8);
  out.writeUInt32BE(header.hopByHop >>> 0, 12);
  out.writeUInt32BE(header.endToEnd >>> 0, 16);
  let at = HEADER_LENGTH;
  for (const a of avps) at += a.copy(out, at);
  return out;
}

/** Rewrites the hop-by-hop id and the T flag of an encoded request in place: the same
 *  bytes are re-sent on another connection or after a restart (RFC 6733 §3, §5.5.4). */
export function stampRequest(message: Buffer, hopByHop: number, retransmit: boolean): void {
  message.writeUInt32BE(hopByHop >>> 0, 12);
  message[4] = retransmit ? message[4]! | Flag.Retransmit : message[4]! & ~Flag.Retransmit;
}

// ---- decoding -------------------------------------------------------------------------

export function decodeAvps(buf: Buffer, start: number, end: number): AvpValue[] {
  const avps: AvpValue[] = [];
  let at = start;
  while (at < end) {
    if (end - at < 8) {
      throw new DiameterDecodeError(`truncated AVP header at offset ${at}`, ResultCode.InvalidAvpLength);
    }
    const code = buf.readUInt32BE(at);
    const flags = buf[at + 4]!;
    const length = buf.readUInt32BE(at + 4) & 0xffffff;
    const vendor = (flags & AvpFlag.Vendor) !== 0;
    const headerLength = vendor ? 12 : 8;
    if (length < headerLength || at + length > end) {
      throw new DiameterDecodeError(
        `AVP ${code} at offset ${at} has length ${length}, outside its message`,
        ResultCode.InvalidAvpLength,
        buf.subarray(at, Math.min(end, at + Math.max(length, 8))),
      );
    }
    if (flags & AVP_FLAGS_RESERVED) {
      throw new DiameterDecodeError(`AVP ${code} has reserved flag bits set`, ResultCode.InvalidAvpBits, buf.subarray(at, at + length));
    }
    avps.push({
      code,
      flags,
      vendorId: vendor ? buf.readUInt32BE(at + 8) : 0,
      data: buf.subarray(at + headerLength, at + length),
    });
    at += pad4(length);
  }
  return avps;
}

/** Decodes one whole message (as cut by the framer). Grouped AVPs stay raw: read them
 *  with `groupedAvps`. */
export function decodeMessage(buf: Buffer): DiameterMessage {
  if (buf.length < HEADER_LENGTH) throw new DiameterDecodeError(`message of ${buf.length} bytes is shorter than a header`, ResultCode.InvalidMessageLength);
  if (buf[0] !== 1) throw new DiameterDecodeError(`unsupported Diameter version ${buf[0]}`, ResultCode.UnsupportedVersion);
  const length = buf.readUInt32BE(0) & 0xffffff;
  if (length !== buf.length || length % 4 !== 0) {
    throw new DiameterDecodeError(`message length field ${length} does not match its ${buf.length} bytes`, ResultCode.InvalidMessageLength);
  }
  const flags = buf[4]!;
  if (flags & COMMAND_FLAGS_RESERVED) throw new DiameterDecodeError('reserved command flag bits are set', ResultCode.InvalidHdrBits);
  return {
    flags,
    commandCode: buf.readUInt32BE(4) & 0xffffff,
    applicationId: buf.readUInt32BE(8),
    hopByHop: buf.readUInt32BE(12),
    endToEnd: buf.readUInt32BE(16),
    avps: decodeAvps(buf, HEADER_LENGTH, buf.length),
  };
}

export const groupedAvps = (avp: AvpValue): AvpValue[] => decodeAvps(avp.data, 0, avp.data.length);

export const findAvp = (avps: AvpValue[], code: number): AvpValue | undefined =>
  avps.find((a) => a.code === code && a.vendorId === 0);

export function readU32(avp: AvpValue): number {
  if (avp.data.length !== 4) throw new DiameterDecodeError(`AVP ${avp.code} should hold 4 bytes, has ${avp.data.length}`, ResultCode.InvalidAvpLength);
  return avp.data.readUInt32BE(0);
}

export const readUtf8 = (avp: AvpValue): string => avp.data.toString('utf8');

// ---- framing --------------------------------------------------------------------------

export interface Framer {
  /** feed bytes as they arrive; calls onMessage once per whole message, in order */
  push(chunk: Buffer): void;
  /** bytes held for an incomplete message */
  readonly buffered: number;
}

/** Cuts a byte stream into messages: any number per read, or one split over many reads.
 *  A header that cannot be a Diameter header means the stream is out of step and cannot
 *  be resynchronised (RFC 6733 §3 has no marker), so onError is called and the caller
 *  must close the connection. */
export function createFramer(onMessage: (msg: Buffer) => void, onError: (err: DiameterDecodeError) => void): Framer {
  let chunks: Buffer[] = [];
  let buffered = 0;
  let failed = false;

  function peekLength(): number {
    // the first 4 bytes may span chunks
    const head = chunks[0]!.length >= 4 ? chunks[0]! : Buffer.concat(chunks).subarray(0, 4);
    return head.readUInt32BE(0);
  }

  function take(n: number): Buffer {
    if (chunks[0]!.length >= n) {
      const first = chunks[0]!;
      const out = first.subarray(0, n);
      if (first.length === n) chunks.shift();
      else chunks[0] = first.subarray(n);
      buffered -= n;
      return out;
    }
    const all = Buffer.concat(chunks);
    chunks = all.length > n ? [all.subarray(n)] : [];
    buffered -= n;
    return all.subarray(0, n);
  }

  return {
    push(chunk: Buffer): void {
      if (failed || chunk.length === 0) return;
      chunks.push(chunk);
      buffered += chunk.length;
      while (buffered >= 4) {
        const word = peekLength();
        const version = word >>> 24;
        const length = word & 0xffffff;
        if (version !== 1 || length < HEADER_LENGTH || length > MAX_MESSAGE_LENGTH || length % 4 !== 0) {
          failed = true;
          chunks = [];
          buffered = 0;
          onError(
            new DiameterDecodeError(
              `stream out of step: header says version ${version}, length ${length}`,
              version !== 1 ? ResultCode.UnsupportedVersion : ResultCode.InvalidMessageLength,
            ),
          );
          return;
        }
        if (buffered < length) return;
        onMessage(take(length));
      }
    },
    get buffered() {
      return buffered;
    },
  };
}

// ---- identifiers ----------------------------------------------------------------------

/** End-to-End identifiers (RFC 6733 §3): the high 12 bits from the low bits of the clock
 *  at start, the low 20 bits random, then increasing; wraps at 2^32. Hop-by-Hop ids use
 *  the same sequence shape (§3: "monotonically increasing", any start value). */
export function createIdSequence(
  first = (((Math.floor(Date.now() / 1000) & 0xfff) << 20) | Math.floor(Math.random() * 0x100000)) >>> 0,
): () => number {
  let next = first >>> 0;
  return () => {
    const id = next;
    next = (next + 1) >>> 0;
    return id;
  };
}
