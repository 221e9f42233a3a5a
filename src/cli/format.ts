// Human-readable figures and fixed-width tables for the CLI (JSON output stays exact).
import { humanBytes, humanRate } from '../core/units.js';

export { humanBytes, humanRate };

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

/** "1h", "30m", "2d", "90s", "1w" → milliseconds; undefined when not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  return Math.round(Number(m[1]) * unit);
}

/** What to call a process row: pid 0 stands for sockets opened before the meter ran,
 *  whose owning process the kernel could not tell. */
export const processName = (pid: number, comm: string) => (pid === 0 ? '(sockets older than the meter)' : comm);
