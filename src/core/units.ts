// Byte counts and rates as people read them (binary units), for the CLI and the agent's
// status line alike.
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function humanBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${UNITS[u]}`;
}

export const humanRate = (bytesPerSecond: number) => `${humanBytes(Math.round(bytesPerSecond))}/s`;

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/** "50GiB", "1.5 GB", "10MiB", "1000" → bytes (binary units are powers of 1024, the SI
 *  ones of 1000); undefined when the text is no byte count. */
export function parseBytes(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const factor = m ? BYTE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || factor === undefined) return undefined;
  return Math.round(Number(m[1]) * factor);
}

const RATE_UNITS: Record<string, number> = { bit: 1 / 8, kbit: 1e3 / 8, mbit: 1e6 / 8, gbit: 1e9 / 8, bps: 1, 'b/s': 1, kbps: 1e3, 'kb/s': 1e3, mbps: 1e6, 'mb/s': 1e6, 'kib/s': 2 ** 10, 'mib/s': 2 ** 20, 'gib/s': 2 ** 30 };

/** "8Mbit", "2Mbit", "500kbit", "1MiB/s" → bytes per second (as tc(8) reads rates: bit
 *  units are bits per second, SI); undefined when the text is no rate. */
export function parseRate(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z/]+)\s*$/i.exec(text);
  const factor = m ? RATE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || factor === undefined) return undefined;
  return Math.round(Number(m[1]) * factor);
}
