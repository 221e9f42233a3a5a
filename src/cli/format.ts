// Human-readable figures and fixed-width tables for the CLI (JSON output stays exact).
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

export type Align = 'left' | 'right';

export interface Column<T> {
  title: string;
  align: Align;
  value(row: T): string;
}

export const left = <T>(title: string, value: (row: T) => string): Column<T> => ({ title, align: 'left', value });
export const right = <T>(title: string, value: (row: T) => string): Column<T> => ({ title, align: 'right', value });

/** RX and TX wire bytes, human-readable: every table of users, processes and flows has them. */
export const bytesColumns = <T extends { rxBytes: number; txBytes: number }>(): Column<T>[] => [
  right('RX', (r) => humanBytes(r.rxBytes)),
  right('TX', (r) => humanBytes(r.txBytes)),
];

const fit = (s: string, width: number, align: Align) => {
  const cut = s.length > width ? `${s.slice(0, Math.max(0, width - 1))}…` : s;
  return align === 'left' ? cut.padEnd(width) : cut.padStart(width);
};

/** Lines of a table whose columns are as wide as their widest cell, cut to `maxWidth`. */
export function table<T>(columns: Column<T>[], rows: T[], maxWidth = Infinity): string[] {
  const cells = rows.map((r) => columns.map((c) => c.value(r)));
  const widths = columns.map((c, i) => Math.max(c.title.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => fit(v, widths[i]!, columns[i]!.align))
      .join('  ')
      .trimEnd()
      .slice(0, maxWidth);
  return [line(columns.map((c) => c.title)), ...cells.map(line)];
}

const DURATION_UNITS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "1h", "30m", "2d", "90s", "1w", "1h30m" → milliseconds; undefined when not a duration. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (!/^(\d+(?:\.\d+)?\s*[smhdw])+$/.test(t)) return undefined;
  let ms = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)\s*([smhdw])/g)) ms += Number(m[1]) * DURATION_UNITS[m[2] as keyof typeof DURATION_UNITS];
  return Math.round(ms);
}

/** What to call a process row: pid 0 stands for sockets opened before the meter ran,
 *  whose owning process the kernel could not tell. */
export const processName = (pid: number, comm: string) => (pid === 0 ? '(sockets older than the meter)' : comm);
