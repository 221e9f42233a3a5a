// Quota enforcement in the kernel (issue 14): what happens to a user whose quota ran out,
// held by bpf/quota.bpf.c with its end so that it lasts through agent restarts and ends on
// time with no agent running. The policy (which user, which period, when) is the caller's;
// this layer only applies verdicts. Pins live under <pinDir>/quota; `ubia detach` removes
// them with the rest of the pin directory. The packet checks run inside the meter's packet
// programs: open the meter of the same pin directory first.
//
// Clock: a verdict ends at a wall-clock time (untilMs); the kernel compares boot time
// (CLOCK_BOOTTIME, which counts suspend), so set() converts with the clocks' offset as it
// is then. A later step of the wall clock (NTP, an admin) does not move the kernel's end:
// set the verdict again after one. list() returns untilMs as it was set.
//
// The interface is issue 14's as agreed with the policy half, plus attached() (whether the
// programs are in place: they are only while a verdict exists; for tests and status)
// and two helpers the policy half may use to validate its configuration: parseCidr (what
// setExemptions accepts) and throttleBurstBytes.
import { isIPv4, isIPv6 } from 'node:net';
import { parseAddress, truncateAddress } from '../privacy/address.js';
import { addon, type NativeCidr, type NativeQuotaVerdict } from './native.js';

export type QuotaAction = { kind: 'block' } | { kind: 'throttle'; bytesPerSecond: number };

export interface QuotaVerdict {
  uid: number;
  action: QuotaAction;
  /** wall-clock epoch ms: the period's end */
  untilMs: number;
}

export interface QuotaExemptions {
  /** destinations never limited: "198.18.0.0/15", "2001:db8::/32", or one address */
  cidrs: string[];
  /** never limit this host's services: loopback traffic, and inbound TCP connections
   *  (sockets whose local port has a listener on this host, such as an SSH login) */
  localServices: boolean;
}

export interface QuotaEnforcer {
  /** idempotent; replaces the uid's verdict */
  set(v: QuotaVerdict): void;
  clear(uid: number): void;
  /** what the kernel holds now (survives agent restarts); expired verdicts are gone */
  list(): QuotaVerdict[];
  setExemptions(e: QuotaExemptions): void;
  /** whether the quota programs are in place (the packet programs in the meter's call
   *  slots, the connect/sendmsg programs attached): only while a verdict exists */
  attached(): boolean;
  /** default keeps verdicts in force (pinned); detach removes programs, maps and pins */
  close(opts?: { detach?: boolean }): void;
}

/** The token bucket's depth for a throttle: a quarter second of the rate, and never less
 *  than two full-size GSO packets (64 KiB each: the cgroup hooks see them whole, and a
 *  bucket smaller than one would never let it pass). See docs/architecture.md, "Quota
 *  enforcement", for the measurements. */
export function throttleBurstBytes(bytesPerSecond: number): number {
  return Math.max(Math.ceil(bytesPerSecond / 4), 2 * 65_536 + 2 * 1500);
}

/** "a.b.c.d/n", "x::/n" or a bare address → the family's trie key. Throws on anything else. */
export function parseCidr(text: string): { family: 4 | 6; cidr: NativeCidr } {
  const [addr = '', len, extra] = text.trim().split('/');
  const family = isIPv4(addr) ? 4 : isIPv6(addr) ? 6 : undefined;
  const bits = family === 4 ? 32 : 128;
  const prefixLength = len === undefined ? bits : Number(len);
  if (family === undefined || extra !== undefined || !Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > bits || len === '') {
    throw new Error(`quota exemption ${JSON.stringify(text)} is not an address or prefix: write e.g. "198.18.0.0/15" or "2001:db8::/32"`);
  }
  return { family, cidr: { prefixLength, address: truncateAddress(parseAddress(addr, family), prefixLength) } };
}

function toNative(v: QuotaVerdict): NativeQuotaVerdict {
  if (!Number.isInteger(v.uid) || v.uid < 0 || v.uid > 0xffff_fffe) throw new Error(`quota verdict: uid ${v.uid} is not a uid`);
  if (!Number.isFinite(v.untilMs)) throw new Error(`quota verdict for uid ${v.uid}: untilMs must be an epoch time in ms`);
  if (v.action.kind === 'block') return { uid: v.uid, action: 'block', rateBytes: 0, burstBytes: 0, untilMs: v.untilMs };
  const rate = Math.round(v.action.bytesPerSecond);
  if (!(rate >= 1)) throw new Error(`quota verdict for uid ${v.uid}: a throttle needs a rate of at least 1 byte per second`);
  return { uid: v.uid, action: 'throttle', rateBytes: rate, burstBytes: throttleBurstBytes(rate), untilMs: v.untilMs };
}

function fromNative(v: NativeQuotaVerdict): QuotaVerdict {
  const action: QuotaAction = v.action === 'block' ? { kind: 'block' } : { kind: 'throttle', bytesPerSecond: v.rateBytes };
  return { uid: v.uid, action, untilMs: v.untilMs };
}

/** Opens (or resumes) quota enforcement pinned under <pinDir>/quota. One process per
 *  pin directory; the meter of pinDir must be open (or pinned) already: throws otherwise. */
export function openQuotaEnforcer(opts: { pinDir: string }): QuotaEnforcer {
  const native = new addon.QuotaEnforcer({ pinDir: opts.pinDir });
  return {
    set: (v) => native.set(toNative(v)),
    clear: (uid) => native.clear(uid),
    list: () => native.list().map(fromNative),
    setExemptions: (e) => {
      const parsed = e.cidrs.map(parseCidr);
      const of = (family: 4 | 6) => parsed.filter((p) => p.family === family).map((p) => p.cidr);
      native.setExemptions(of(4), of(6), e.localServices);
    },
    attached: () => native.attached(),
    close: (o) => native.close(o?.detach ?? false),
  };
}
