// The one time rule of `flows` (and the commands that adopt it): local time with its
// offset or UTC, bare date = midnight, today/yesterday/this-month, durations ago.
import { execFileSync } from 'node:child_process';
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

// The rule in other time zones, DST change days included, against GNU date(1) as the
// reference: `date -d 2026-03-29` is local midnight, and so must `--from 2026-03-29` be.
// Each zone runs in its own Node process (the zone is read at start).
const ZONES = ['UTC', 'America/New_York', 'Europe/Berlin', 'Australia/Lord_Howe', 'Asia/Kolkata', 'Pacific/Chatham'];
// US DST starts/ends, EU starts/ends, Lord Howe's half-hour change, a plain day
const DAYS = ['2026-03-08', '2026-11-01', '2026-03-29', '2026-10-25', '2026-04-05', '2026-10-04', '2026-11-27'];

const dateSeconds = (tz: string, text: string): number =>
  Number(execFileSync('date', ['-d', text, '+%s'], { env: { ...process.env, TZ: tz, LC_ALL: 'C' } }).toString().trim());

/** parseTime and formatTime as the CLI runs them, in time zone `tz`. */
function inZone(tz: string, calls: { text: string; nowMs: number }[]): { parsed: number; shown: string }[] {
  const script = `import { formatTime, parseTime } from './src/cli/when.ts';
const calls = JSON.parse(process.argv[1]);
process.stdout.write(JSON.stringify(calls.map((c) => { const parsed = parseTime(c.text, c.nowMs, { utc: false }); return { parsed, shown: formatTime(parsed, { utc: false }) }; })));`;
  const out = execFileSync(process.execPath, ['--experimental-transform-types', '--disable-warning=ExperimentalWarning', '--import', './scripts/ts-hooks.mjs', '--input-type=module', '-e', script, JSON.stringify(calls)], {
    env: { ...process.env, TZ: tz },
  });
  return JSON.parse(out.toString()) as { parsed: number; shown: string }[];
}

describe('time rule in other time zones (against date -d)', () => {
  it.each(ZONES)('%s: bare dates, date-times, today/yesterday/this-month on DST days', (tz) => {
    const cases: { text: string; nowMs: number; expected: number }[] = [];
    for (const day of DAYS) {
      const nextDay = new Date(Date.parse(day) + 86_400_000).toISOString().slice(0, 10); // calendar arithmetic only
      const noonNextDay = dateSeconds(tz, `${nextDay} 12:00`) * 1000;
      cases.push({ text: day, nowMs: NOW, expected: dateSeconds(tz, day) * 1000 });
      cases.push({ text: `${day}T12:00`, nowMs: NOW, expected: dateSeconds(tz, `${day} 12:00`) * 1000 });
      cases.push({ text: `${day}T23:30:15`, nowMs: NOW, expected: dateSeconds(tz, `${day} 23:30:15`) * 1000 });
      // the day after a change: "yesterday" is the change day's local midnight
      cases.push({ text: 'yesterday', nowMs: noonNextDay, expected: dateSeconds(tz, day) * 1000 });
      cases.push({ text: 'today', nowMs: noonNextDay, expected: dateSeconds(tz, nextDay) * 1000 });
      cases.push({ text: 'this-month', nowMs: noonNextDay, expected: dateSeconds(tz, `${day.slice(0, 8)}01`) * 1000 });
    }
    const got = inZone(tz, cases);
    cases.forEach((c, i) => {
      expect({ text: c.text, now: c.nowMs, ms: got[i]!.parsed }).toEqual({ text: c.text, now: c.nowMs, ms: c.expected });
      // shown with the offset in force then, as date(1) shows it, and read back the same
      const offset = execFileSync('date', ['-d', `@${c.expected / 1000}`, '+%:z'], { env: { ...process.env, TZ: tz } }).toString().trim();
      expect(got[i]!.shown.endsWith(offset === '+00:00' || offset === '-00:00' ? '+00:00' : offset)).toBe(true);
      expect(Date.parse(got[i]!.shown)).toBe(c.expected);
    });
  });
});

describe('report periods in other time zones (against date -d)', () => {
  /** what date(1) shows for each instant, in `tz` */
  const dateShows = (tz: string, ms: number[], format: string): string[] =>
    execFileSync('date', ['-f', '-', format], { input: ms.map((t) => `@${t / 1000}`).join('\n'), env: { ...process.env, TZ: tz } }).toString().trim().split('\n');

  it.each(ZONES)('%s: a local day cut into its local hours, DST days included; a week into its days', (tz) => {
    const script = `import { periodEdges } from './src/cli/when.ts';
const [from, to, weekEnd] = JSON.parse(process.argv[1]);
process.stdout.write(JSON.stringify({ hours: periodEdges(from, to, 'hour', { utc: false }, 100), days: periodEdges(from, weekEnd, 'day', { utc: false }, 100) }));`;
    for (const day of DAYS) {
      const next = (n: number) => new Date(Date.parse(day) + n * 86_400_000).toISOString().slice(0, 10);
      const from = dateSeconds(tz, day) * 1000;
      const to = dateSeconds(tz, next(1)) * 1000;
      const out = execFileSync(process.execPath, ['--experimental-transform-types', '--disable-warning=ExperimentalWarning', '--import', './scripts/ts-hooks.mjs', '--input-type=module', '-e', script, JSON.stringify([from, to, dateSeconds(tz, next(7)) * 1000])], { env: { ...process.env, TZ: tz } });
      const { hours, days } = JSON.parse(out.toString()) as { hours: number[]; days: number[] };
      // the whole local hours date(1) shows within the day, found a quarter hour at a time
      const quarters = Array.from({ length: (to - from) / 900_000 - 1 }, (_, i) => from + (i + 1) * 900_000);
      const shown = dateShows(tz, quarters, '+%M%S');
      expect(hours, `${tz} ${day}`).toEqual(quarters.filter((_, i) => shown[i] === '0000'));
      expect(days).toEqual([1, 2, 3, 4, 5, 6].map((n) => dateSeconds(tz, next(n)) * 1000));
    }
  });
});
