// What the quota enforcer's TypeScript layer accepts before anything reaches the kernel:
// exemption prefixes as the tries key them, the throttle's bucket depth. No root needed.
import { describe, expect, it } from 'vitest';
import { parseCidr, throttleBurstBytes } from '../src/kernel/quota.js';

describe('quota exemptions', () => {
  it('keys IPv4 and IPv6 prefixes by family, host bits cleared', () => {
    expect(parseCidr('198.18.7.9/15')).toEqual({ family: 4, cidr: { prefixLength: 15, address: Uint8Array.from([198, 18, 0, 0]) } });
    expect(parseCidr('2001:db8::1/32')).toEqual({
      family: 6,
      cidr: { prefixLength: 32, address: Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) },
    });
  });

  it('takes a bare address as a host prefix', () => {
    expect(parseCidr('10.1.2.3').cidr).toEqual({ prefixLength: 32, address: Uint8Array.from([10, 1, 2, 3]) });
    expect(parseCidr('::1').cidr.prefixLength).toBe(128);
  });

  it('refuses what is not a prefix, saying what to write', () => {
    for (const bad of ['', 'local', '10.0.0.0/33', '10.0.0.0/', '10.0.0.0/8/1', '2001:db8::/129', '300.1.1.1', '10.0.0.0/x']) {
      expect(() => parseCidr(bad), bad).toThrow(/is not an address or prefix: write e\.g\./);
    }
  });
});

describe('throttle bucket depth', () => {
  it('is a quarter second of the rate, never less than two 64 KiB GSO packets', () => {
    expect(throttleBurstBytes(1_000_000)).toBe(250_000);
    expect(throttleBurstBytes(250_000)).toBe(2 * 65_536 + 3000);
    expect(throttleBurstBytes(12_500_000)).toBe(3_125_000);
  });
});
