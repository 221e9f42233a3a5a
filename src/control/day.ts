// "Today" for `ubia top` and the default range of `ubia users`: since local midnight.
export function localDayStart(nowMs: number): number {
  const d = new Date(nowMs);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}
