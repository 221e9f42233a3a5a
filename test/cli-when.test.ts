// The one time rule of `flows` (and the commands that adopt it): local time with its
// offset or UTC, bare date = midnight, today/yesterday/this-month, durations ago.
import { describe, expect, it } from 'vitest';
import { formatTime, parseTime } from '../src/cli/when.js';
import { parseDuration } from '../src/cli/format.js';

const local = { utc: false };
const utc = { utc: true };
const NOW = new Date(2026, 10, 27, 15, 30, 0).getTime(); // local 2026-11-27 15:30

describe('time rule', () => {
  it('reads bare dates and date-times as local midnight / local time, or UTC with --utc', () => {
    expect(parseTime('2026-11-27', NOW, local)).toBe(new Date(2026, 10, 27).getTime());
    expect(parseTime('2026-11-27T23:00', NOW, local)).toBe(new Date(2026, 10, 27, 23).getTime());
    expect(parseTime('2026-11-27', NOW, utc)).toBe(Date.UTC(2026, 10, 27));
    expect(parseTime('2026-11-27 23:00:05.5', NOW, utc)).toBe(Date.UTC(2026, 10, 27, 23, 0, 5, 500));
    expect(parseTime('2026-11-27T23:00+01:00', NOW, local)).toBe(Date.UTC(2026, 10, 27, 22));
    expect(parseTime('2026-11-27T23:00Z', NOW, local)).toBe(Date.UTC(2026, 10, 27, 23));
  });

  it('names periods and durations ago', () => {
    expect(parseTime('today', NOW, local)).toBe(new Date(2026, 10, 27).getTime());
    expect(parseTime('yesterday', NOW, local)).toBe(new Date(2026, 10, 26).getTime());
    expect(parseTime('this-month', NOW, local)).toBe(new Date(2026, 10, 1).getTime());
    expect(parseTime('this-month', Date.UTC(2026, 0, 1, 5), utc)).toBe(Date.UTC(2026, 0, 1));
    expect(parseTime('1h30m', NOW, local)).toBe(NOW - 5_400_000);
    expect(parseTime('now', NOW, local)).toBe(NOW);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1h 30x')).toBeUndefined();
    for (const bad of ['tomorrowish', '2026-13', '27.11.2026', '']) expect(parseTime(bad, NOW, local)).toBeUndefined();
  });

  it('shows local time with its offset, or UTC', () => {
    const ms = Date.UTC(2026, 10, 27, 22, 0, 0);
    expect(formatTime(ms, utc)).toBe('2026-11-27T22:00:00Z');
    const shown = formatTime(ms, local);
    expect(shown).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$/);
    expect(Date.parse(shown)).toBe(ms);
    expect(parseTime(shown, NOW, local)).toBe(ms);
  });
});
