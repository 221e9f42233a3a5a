// The calendar periods of quotas, in the agent's local time (TZ): a day from midnight, a
// week from Monday midnight, a month from the 1st. The Date constructor does the calendar
// arithmetic, so a day across a DST change is 23 or 25 hours long, and a midnight that does
// not exist (a zone that springs forward at 00:00) starts the day at the first instant
// that does.
export type PeriodKind = 'day' | 'week' | 'month';

export interface Period {
  kind: PeriodKind;
  /** ms since the epoch; end is the next period's start */
  startMs: number;
  endMs: number;
}

export function periodAt(kind: PeriodKind, nowMs: number): Period {
  const d = new Date(nowMs);
  const [y, m, day] = [d.getFullYear(), d.getMonth(), d.getDate()];
  const local = (yy: number, mm: number, dd: number) => new Date(yy, mm, dd).getTime();
  switch (kind) {
    case 'day':
      return { kind, startMs: local(y, m, day), endMs: local(y, m, day + 1) };
    case 'week': {
      const monday = day - ((d.getDay() + 6) % 7);
      return { kind, startMs: local(y, m, monday), endMs: local(y, m, monday + 7) };
    }
    case 'month':
      return { kind, startMs: local(y, m, 1), endMs: local(y, m + 1, 1) };
  }
}
