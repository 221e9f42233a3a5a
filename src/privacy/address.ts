// Textual IP addresses ↔ network-order bytes, and prefix truncation for privacy (used by the
// IPFIX exporter and by the control API's auditor role).
import { isIPv4, isIPv6 } from 'node:net';

function parseIPv4Into(s: string, out: Uint8Array, at: number): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (p.length === 0 || p.length > 3) return false;
    const n = Number(p);
    if (!Number.isInteger(n) || n < 0 || n > 255) return false;
    out[at + i] = n;
  }
  return true;
}

/** "192.0.2.1" → 4 bytes. Throws on anything that is not a dotted-quad IPv4 address. */
function parseIPv4(s: string): Uint8Array {
  const out = new Uint8Array(4);
  if (!parseIPv4Into(s, out, 0)) throw new Error(`not an IPv4 address: ${JSON.stringify(s)}`);
  return out;
}

/** RFC 4291 §2.2 text forms ("::", embedded IPv4, zone "%eth0" ignored) → 16 bytes. */
function parseIPv6(s: string): Uint8Array {
  const zone = s.indexOf('%');
  const text = zone >= 0 ? s.slice(0, zone) : s;
  if (!isIPv6(text)) throw new Error(`not an IPv6 address: ${JSON.stringify(s)}`);
  const out = new Uint8Array(16);
  const halves = text.split('::');
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const head = groups(halves[0]!);
  const tail = halves.length > 1 ? groups(halves[1]!) : [];
  const writeGroups = (gs: string[], start: number): number => {
    let at = start;
    for (const g of gs) {
      if (g.includes('.')) {
        parseIPv4Into(g, out, at);
        at += 4;
      } else {
        const n = parseInt(g, 16);
        out[at] = n >> 8;
        out[at + 1] = n & 0xff;
        at += 2;
      }
    }
    return at;
  };
  writeGroups(head, 0);
  const tailBytes = tail.reduce((n, g) => n + (g.includes('.') ? 4 : 2), 0);
  writeGroups(tail, 16 - tailBytes);
  return out;
}

export function parseAddress(s: string, family: 4 | 6): Uint8Array {
  if (family === 4) return parseIPv4(s);
  // the meter may report an IPv4 peer of an IPv6 socket in dotted form; map it (RFC 4291 §2.5.5.2)
  return isIPv4(s) ? parseIPv6(`::ffff:${s}`) : parseIPv6(s);
}

/** Keeps the first `prefix` bits and zeroes the rest. */
export function truncateAddress(a: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(a.length);
  const full = prefix >> 3;
  out.set(a.subarray(0, full));
  const rest = prefix & 7;
  if (rest !== 0 && full < a.length) out[full] = a[full]! & (0xff << (8 - rest));
  return out;
}

/** 4 or 16 network-order bytes → text: dotted quad, or RFC 5952 §4 canonical IPv6 (lower
 *  case, the longest run of two or more zero groups as "::", the first on a tie; §5:
 *  IPv4-mapped addresses keep their dotted tail). */
export function formatAddress(a: Uint8Array): string {
  if (a.length === 4) return a.join('.');
  const groups = Array.from({ length: 8 }, (_, i) => (a[2 * i]! << 8) | a[2 * i + 1]!);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${a.subarray(12).join('.')}`;
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  return best.at < 0 ? hex(groups) : `${hex(groups.slice(0, best.at))}::${hex(groups.slice(best.at + best.len))}`;
}
