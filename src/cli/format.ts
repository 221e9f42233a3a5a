// Human-readable figures and fixed-width tables for the CLI (JSON output stays exact).
import { humanBytes, humanRate } from '../core/units.js';
import type { TrafficCounters } from '../core/counters.js';

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

/** All six counters: wire bytes, packets, payload (the tables of usage totals). */
export const counterColumns = <T extends TrafficCounters>(): Column<T>[] => [
  ...bytesColumns<T>(),
  right('RX pkts', (r) => String(r.rxPackets)),
  right('TX pkts', (r) => String(r.txPackets)),
  right('RX payload', (r) => humanBytes(r.rxPayloadBytes)),
  right('TX payload', (r) => humanBytes(r.txPayloadBytes)),
];

const fit = (s: string, width: number, align: Align) => {
  const cut = s.length > width ? `${s.slice(0, Math.max(0, width - 1))}…` : s;
  return align === 'left' ? cut.padEnd(width) : cut.padStart(width);
};

/** Lines of a table whose columns are as wide as their widest cell, cut to `maxWidth`. */
export function table<T>(columns: Column<T>[], rows: T[], maxWidth = Infinity): string[] {
  const cells = rows.map((r) => columns.map((c) => c.value(r)));
  return layOut(columns, cells, naturalWidths(columns, cells), maxWidth);
}

const naturalWidths = <T>(columns: Column<T>[], cells: string[][]) =>
  columns.map((c, i) => Math.max(c.title.length, ...cells.map((row) => row[i]!.length)));

/** The title line and one line per row, each cell fitted to its column's width. */
function layOut<T>(columns: Column<T>[], cells: string[][], widths: number[], maxWidth: number): string[] {
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

const BIT_UNITS = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];

/** A byte rate as bits per second in SI units (as link speeds are given). */
export function humanBitRate(bytesPerSecond: number): string {
  let v = bytesPerSecond * 8;
  let u = 0;
  while (v >= 1000 && u < BIT_UNITS.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${Math.round(v)} bit/s` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${BIT_UNITS[u]}`;
}

export interface FitColumn<T> extends Column<T> {
  /** on a narrow terminal, columns with a higher `drop` go first; 0 = always shown */
  drop: number;
  /** a text column (names) may be cut down to this width; figures never are */
  minWidth?: number;
}

/** A table that fits `width`: the text column is cut first (down to its minWidth), then
 *  whole columns are dropped, so no figure is ever shown cut. */
export function fitTable<T>(columns: FitColumn<T>[], rows: T[], width: number): string[] {
  let shown = columns;
  for (;;) {
    const cells = rows.map((r) => shown.map((c) => c.value(r)));
    const widths = naturalWidths(shown, cells);
    const total = widths.reduce((a, b) => a + b, 0) + 2 * (shown.length - 1);
    const flex = shown.findIndex((c) => c.minWidth !== undefined);
    const spare = flex >= 0 ? widths[flex]! - Math.max(shown[flex]!.minWidth!, shown[flex]!.title.length) : 0;
    const droppable = shown.filter((c) => c.drop > 0);
    if (total <= width || total - spare <= width || droppable.length === 0) {
      if (total > width && flex >= 0) widths[flex] = Math.max(widths[flex]! - (total - width), shown[flex]!.minWidth!);
      return layOut(shown, cells, widths, width);
    }
    const victim = droppable.reduce((a, b) => (b.drop > a.drop ? b : a));
    shown = shown.filter((c) => c !== victim);
  }
}
