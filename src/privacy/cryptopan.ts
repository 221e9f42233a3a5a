// Crypto-PAn prefix-preserving address anonymisation (Xu, Fan, Ammar, Moon, ICNP 2002):
// two addresses sharing a k-bit prefix map to addresses sharing a k-bit prefix. Same output
// as the reference implementation for IPv4 and its common 128-bit extension for IPv6.
// Shared by the IPFIX exporter and the control API's auditor role.
import { createCipheriv } from 'node:crypto';
import { readFileSync } from 'node:fs';

export type Anonymizer = (address: Uint8Array) => Uint8Array;

/** Reads a 32-byte key: raw bytes, or 64 hex digits (surrounding whitespace ignored). */
export function readCryptoPanKey(path: string): Buffer {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read the Crypto-PAn key file ${path}: ${(err as Error).message}; create one with: head -c 32 /dev/urandom > ${path}`);
  }
  if (raw.length === 32) return raw;
  const text = raw.toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  throw new Error(`Crypto-PAn key file ${path} holds ${raw.length} bytes: it needs exactly 32 raw bytes or 64 hex digits`);
}

/** key: 32 bytes; the first 16 are the AES-128 key, the last 16 encrypted give the pad. */
export function createCryptoPan(key: Uint8Array): Anonymizer {
  if (key.length !== 32) throw new Error(`Crypto-PAn key must be 32 bytes, got ${key.length}`);
  const cipher = createCipheriv('aes-128-ecb', key.subarray(0, 16), null);
  cipher.setAutoPadding(false);
  const aes = (block: Uint8Array): Buffer => cipher.update(block);
  const pad = aes(key.subarray(16, 32));
  const block = new Uint8Array(16);

  return (address) => {
    const bits = address.length * 8;
    const otp = new Uint8Array(address.length);
    for (let pos = 0; pos < bits; pos++) {
      // block = first `pos` bits of the address, the remaining bits from the pad
      block.set(pad);
      const whole = pos >> 3;
      block.set(address.subarray(0, whole));
      const part = pos & 7;
      if (part !== 0) {
        const mask = 0xff << (8 - part) & 0xff;
        block[whole] = (address[whole]! & mask) | (pad[whole]! & ~mask & 0xff);
      }
      const msb = aes(block)[0]! >> 7;
      otp[whole] |= msb << (7 - part);
    }
    const out = new Uint8Array(address.length);
    for (let i = 0; i < out.length; i++) out[i] = address[i]! ^ otp[i]!;
    return out;
  };
}
