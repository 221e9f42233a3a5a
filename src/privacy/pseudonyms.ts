// The auditor's view of who and where: stable keyed pseudonyms for users and processes
// (HMAC-SHA256, RFC 2104) and Crypto-PAn for remote addresses, from one secret. The same
// secret gives the same pseudonym across requests and restarts; without it they cannot be
// reversed or guessed by trying uids.
import { createHmac, hkdfSync } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { formatAddress, parseAddress } from './address.js';
import { createCryptoPan } from './cryptopan.js';

/** Pseudonymous uids and pids start here: no real uid or pid reaches 2^32 (uid_t and pid_t are 32-bit). */
export const PSEUDONYM_BASE = 2 ** 32;

export interface Pseudonyms {
  /** a number ≥ 2^32 that stands for the uid */
  uid(uid: number): number;
  /** "anon-" and 10 hex digits, standing for the user */
  user(uid: number): string;
  /** a number ≥ 2^32 that stands for the pid; 0 (no known process) stays 0 */
  pid(pid: number): number;
  /** the address Crypto-PAn-anonymised, in the same text form (an IPv4-mapped IPv6 address keeps its form) */
  address(text: string, family: number): string;
}

/** Independent sub-keys (RFC 5869 HKDF), so the HMAC key is never also the AES key. */
const subKey = (secret: Uint8Array, purpose: string) => Buffer.from(hkdfSync('sha256', secret, '', `ubia ${purpose}`, 32));

export function createPseudonyms(secret: Uint8Array): Pseudonyms {
  const macKey = subKey(secret, 'auditor pseudonyms');
  const anonymize = createCryptoPan(subKey(secret, 'auditor cryptopan'));
  const mac = (what: string) => createHmac('sha256', macKey).update(what).digest();
  const number = (what: string) => PSEUDONYM_BASE + mac(what).readUIntBE(0, 6);
  return {
    uid: (uid) => number(`uid:${uid}`),
    user: (uid) => `anon-${mac(`uid:${uid}`).toString('hex', 0, 5)}`,
    pid: (pid) => (pid === 0 ? 0 : number(`pid:${pid}`)),
    address(text, family) {
      // an IPv4 peer seen through an IPv6 socket is anonymised as the IPv4 address it is
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(text);
      const v4 = family === 4 || isIPv4(text) ? text : mapped?.[1];
      if (v4 !== undefined) {
        const out = formatAddress(anonymize(parseAddress(v4, 4)));
        return v4 === text ? out : `::ffff:${out}`;
      }
      return formatAddress(anonymize(parseAddress(text, 6)));
    },
  };
}
