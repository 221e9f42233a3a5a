// Address text ↔ bytes: formatAddress writes what parseAddress reads, in the canonical
// form (RFC 5952) that node's own URL parser also produces.
import { describe, expect, it } from 'vitest';
import { formatAddress, parseAddress } from '../src/privacy/address.js';

describe('formatAddress', () => {
  const v6 = ['::', '::1', '2001:db8::1', '2001:db8:0:0:1:0:0:1', 'fe80::1:0:0:0', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:1', '1:0:0:2:0:0:0:3', '0:1::'];
  for (const text of v6) {
    it(`${text} round-trips in canonical form`, () => {
      const canonical = new URL(`http://[${text}]/`).hostname.slice(1, -1);
      expect(formatAddress(parseAddress(text, 6))).toBe(canonical);
    });
  }
  it('IPv4 and IPv4-mapped IPv6 keep their dotted form', () => {
    expect(formatAddress(parseAddress('198.18.0.2', 4))).toBe('198.18.0.2');
    expect(formatAddress(parseAddress('::ffff:198.18.0.2', 6))).toBe('::ffff:198.18.0.2');
  });
});
