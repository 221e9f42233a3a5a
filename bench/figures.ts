// How the benchmarks state a figure measured several times: its median and range.

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** "median (min–max)" of xs, each shown by `show`. */
export function spread(xs: number[], show: (x: number) => string): string {
  return xs.length ? `${show(median(xs))} (${show(Math.min(...xs))}–${show(Math.max(...xs))})` : 'none measured';
}
