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
