// IPFIX wire encoding (RFC 7011): template sets, data records, and messages that pack
// them under a size limit with the right header and sequence number.
import { VARIABLE_LENGTH, type FieldSpec } from './elements.js';

export const IPFIX_VERSION = 10; // RFC 7011 §3.1
export const MESSAGE_HEADER_BYTES = 16; // RFC 7011 §3.1
export const SET_HEADER_BYTES = 4; // RFC 7011 §3.3.2
export const TEMPLATE_SET_ID = 2; // RFC 7011 §3.3.2
export const FIRST_TEMPLATE_ID = 256; // RFC 7011 §3.4.1: IDs 0-255 are reserved for Set IDs
/** Strings longer than this are cut (at a UTF-8 character boundary) so a record always fits
 *  a message; user and process names are far shorter. */
export const MAX_STRING_BYTES = 4096;
/** CACE strings carry their own 1-byte length, so they stop at 254 bytes. */
export const MAX_CACE_STRING_BYTES = 254;

/** Strings of up to this many UTF-16 units are at most 3 × 84 = 252 UTF-8 bytes. */
const SHORT_STRING_CHARS = 84;

export type FieldValue = number | bigint | string | Uint8Array;

export interface TemplateField<R> {
  spec: FieldSpec;
  value: (record: R) => FieldValue;
}

/** What the template record announces: its ID and field specifiers. */
export interface TemplateLayout {
  /** ≥ 256, RFC 7011 §3.4.1 */
  id: number;
  fields: ReadonlyArray<{ spec: FieldSpec }>;
}

export interface Template<R> extends TemplateLayout {
  fields: ReadonlyArray<TemplateField<R>>;
}

function fieldSpecifierBytes(f: FieldSpec): number {
  return f.pen === 0 ? 4 : 8;
}

/** A Template Set (RFC 7011 §3.4.1) with the given template records, zero-padded to 4 bytes
 *  (§3.3.1: padding is allowed and shorter than the smallest record). */
export function encodeTemplateSet(templates: ReadonlyArray<TemplateLayout>): Buffer {
  let length = SET_HEADER_BYTES;
  for (const t of templates) {
    if (t.id < FIRST_TEMPLATE_ID || t.id > 65535) throw new Error(`template ID ${t.id} is outside 256..65535 (RFC 7011 §3.4.1)`);
    length += 4;
    for (const f of t.fields) length += fieldSpecifierBytes(f.spec);
  }
  const padded = (length + 3) & ~3;
  const buf = Buffer.alloc(padded);
  buf.writeUInt16BE(TEMPLATE_SET_ID, 0);
  buf.writeUInt16BE(padded, 2);
  let off = SET_HEADER_BYTES;
  for (const t of templates) {
    buf.writeUInt16BE(t.id, off);
    buf.writeUInt16BE(t.fields.length, off + 2);
    off += 4;
    for (const { spec } of t.fields) {
      // §3.2: the enterprise bit is the top bit of the Information Element identifier
      buf.writeUInt16BE(spec.pen === 0 ? spec.id : spec.id | 0x8000, off);
      buf.writeUInt16BE(spec.length, off + 2);
      if (spec.pen !== 0) buf.writeUInt32BE(spec.pen, off + 4);
      off += fieldSpecifierBytes(spec);
    }
  }
  return buf;
}

/** Largest encoded size of one record of this template. */
export function maxRecordBytes(t: TemplateLayout): number {
  let n = 0;
  for (const { spec } of t.fields) {
    if (spec.length !== VARIABLE_LENGTH) n += spec.length;
    else n += spec.type === 'caceString' ? 1 + 1 + MAX_CACE_STRING_BYTES : 3 + MAX_STRING_BYTES;
  }
  return n;
}

function utf8Bytes(s: string | Uint8Array, max: number): Uint8Array {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  if (b.length <= max) return b;
  let n = max;
  while (n > 0 && (b[n]! & 0xc0) === 0x80) n--; // do not cut a UTF-8 sequence in half
  return b.subarray(0, n);
}

/** RFC 7011 §7: length < 255 in one byte, else 255 followed by a 2-byte length. */
function writeVariableLength(buf: Buffer, off: number, len: number): number {
  if (len < 255) {
    buf[off] = len;
    return off + 1;
  }
  buf[off] = 255;
  buf.writeUInt16BE(len, off + 1);
  return off + 3;
}

// DataView writes are unchecked JIT intrinsics, several times cheaper than Buffer's
// range-checked writeUInt*BE at half a million records a second; the view of the last
// buffer written to is kept since encoders reuse one scratch buffer.
let viewedBuffer: Buffer | null = null;
let view: DataView = new DataView(new ArrayBuffer(0));
function viewOf(buf: Buffer): DataView {
  if (buf !== viewedBuffer) {
    viewedBuffer = buf;
    view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  return view;
}

function writeUnsigned64(dv: DataView, off: number, v: number | bigint): void {
  if (typeof v === 'bigint') {
    dv.setBigUint64(off, BigInt.asUintN(64, v));
    return;
  }
  const hi = Math.floor(v / 4294967296);
  dv.setUint32(off, hi >>> 0);
  dv.setUint32(off + 4, (v - hi * 4294967296) >>> 0);
}

/** Writes one data record (RFC 7011 §3.4.3) at `off`; returns the offset after it.
 *  The caller guarantees `maxRecordBytes(t)` bytes of room. */
export function encodeRecord<R>(t: Template<R>, record: R, buf: Buffer, off: number): number {
  const dv = viewOf(buf);
  for (const f of t.fields) {
    const v = f.value(record);
    switch (f.spec.type) {
      case 'unsigned8': dv.setUint8(off, Number(v) & 0xff); off += 1; break;
      case 'unsigned16': dv.setUint16(off, Number(v) & 0xffff); off += 2; break;
      case 'unsigned32': dv.setUint32(off, Number(v) >>> 0); off += 4; break;
      case 'unsigned64':
      case 'dateTimeMilliseconds': // RFC 7011 §6.1.9: milliseconds since the UNIX epoch, 64 bits
        writeUnsigned64(dv, off, v as number | bigint); off += 8; break;
      case 'ipv4Address':
      case 'ipv6Address': {
        const a = v as Uint8Array;
        if (a.length !== f.spec.length) throw new Error(`${f.spec.name}: address of ${a.length} bytes, expected ${f.spec.length}`);
        buf.set(a, off); off += a.length; break;
      }
      case 'string': // RFC 7011 §6.1.6: UTF-8, no terminating NUL
        if (typeof v === 'string' && v.length <= SHORT_STRING_CHARS) {
          // fast path: at most 254 bytes, so the length fits the 1-byte form; write in place
          const n = buf.write(v, off + 1, 'utf8');
          buf[off] = n;
          off += 1 + n;
        } else {
          const s = utf8Bytes(v as string | Uint8Array, MAX_STRING_BYTES);
          off = writeVariableLength(buf, off, s.length);
          buf.set(s, off); off += s.length;
        }
        break;
      case 'caceString': {
        const s = utf8Bytes(v as string | Uint8Array, MAX_CACE_STRING_BYTES);
        off = writeVariableLength(buf, off, s.length + 1);
        buf[off] = s.length;
        buf.set(s, off + 1); off += s.length + 1; break;
      }
    }
  }
  return off;
}

export interface EncodedMessage {
  bytes: Buffer;
  /** data records in the message */
  records: number;
}

export interface MessagePacker {
  /** Adds a template set; it goes before any data that follows in the same stream. */
  addTemplates(set: Buffer): void;
  /** Adds one data record already encoded for template `setId`. */
  addRecord(setId: number, record: Uint8Array): void;
  /** Ends the current message (if it holds anything) and hands it to the sink. */
  flush(): void;
  /** The Sequence Number of the next message (a new Transport Session, or records that
   *  carry numbers of their own: the TCP spool's). */
  setSequence(value: number): void;
  /** data records handed out in messages in this stream so far */
  readonly sequence: number;
}

/**
 * Packs sets into messages of at most `maxBytes` (RFC 7011 §10.3.3 for UDP: keep under the
 * path MTU; §3.1: at most 65535 bytes). Consecutive records of one template share a Data Set.
 * Sequence Number = data records sent before this message in the stream, mod 2^32 (§3.1).
 */
export function createMessagePacker(opts: {
  maxBytes: number;
  observationDomainId: number;
  sink: (msg: EncodedMessage) => void;
  /** seconds since the epoch for the Export Time field */
  now?: () => number;
}): MessagePacker {
  const { maxBytes, observationDomainId, sink } = opts;
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  if (maxBytes > 65535 || maxBytes < 64) throw new Error(`IPFIX message size ${maxBytes} is outside 64..65535`);
  let buf = Buffer.allocUnsafe(maxBytes);
  let off = MESSAGE_HEADER_BYTES;
  let setStart = -1; // offset of the open Data Set's header, -1 when none
  let setId = -1;
  let records = 0;
  let sequence = 0;

  function closeSet(): void {
    if (setStart < 0) return;
    const padded = (off - setStart + 3) & ~3; // §3.3.1 zero padding
    buf.fill(0, off, setStart + padded);
    off = setStart + padded;
    buf.writeUInt16BE(off - setStart, setStart + 2);
    setStart = -1;
    setId = -1;
  }

  function flush(): void {
    closeSet();
    if (off === MESSAGE_HEADER_BYTES) return;
    buf.writeUInt16BE(IPFIX_VERSION, 0);
    buf.writeUInt16BE(off, 2);
    buf.writeUInt32BE(now() >>> 0, 4);
    buf.writeUInt32BE(sequence, 8);
    buf.writeUInt32BE(observationDomainId >>> 0, 12);
    const msg = { bytes: buf.subarray(0, off), records };
    sequence = (sequence + records) >>> 0; // modulo 2^32
    buf = Buffer.allocUnsafe(maxBytes);
    off = MESSAGE_HEADER_BYTES;
    records = 0;
    sink(msg);
  }

  function room(bytes: number): void {
    if (off + bytes > maxBytes) flush();
  }

  return {
    addTemplates(set) {
      closeSet();
      room(set.length);
      if (off + set.length > maxBytes) throw new Error(`template set of ${set.length} bytes does not fit a ${maxBytes}-byte message: raise the message size`);
      buf.set(set, off);
      off += set.length;
    },
    addRecord(id, record) {
      // worst case: a new set header and 3 bytes of padding
      const need = record.length + (setId === id ? 3 : SET_HEADER_BYTES + 3);
      if (off + need > maxBytes) {
        flush();
        if (MESSAGE_HEADER_BYTES + SET_HEADER_BYTES + record.length + 3 > maxBytes) {
          throw new Error(`a ${record.length}-byte record does not fit a ${maxBytes}-byte message: raise the message size`);
        }
      }
      if (setId !== id) {
        closeSet();
        setStart = off;
        setId = id;
        buf.writeUInt16BE(id, off);
        off += SET_HEADER_BYTES;
      }
      buf.set(record, off);
      off += record.length;
      records++;
    },
    flush,
    setSequence(value) { sequence = value >>> 0; },
    get sequence() { return sequence; },
  };
}
