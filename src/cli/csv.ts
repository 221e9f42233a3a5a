// --csv: exact figures (no units) as RFC 4180 comma-separated values, with a header line.

/** RFC 4180 §2: a field with a comma, quote or line break is quoted, quotes doubled. */
const field = (v: unknown): string => {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

/** The header and one line per row, with the named fields of each row in that order. */
export function csvLines<T extends object>(fields: readonly (keyof T & string)[], rows: readonly T[], header = true): string[] {
  const lines = rows.map((r) => fields.map((f) => field(r[f])).join(','));
  return header ? [fields.join(','), ...lines] : lines;
}
