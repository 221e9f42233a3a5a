// Metric families → the two text formats a scraper may ask for: OpenMetrics 1.0
// (application/openmetrics-text, what Prometheus asks for first) and the Prometheus text
// format 0.0.4 (text/plain, what curl and `promtool check metrics` get).
// OpenMetrics 1.0: https://github.com/OpenObservability/OpenMetrics/blob/main/specification/OpenMetrics.md
// Text format 0.0.4: https://prometheus.io/docs/instrumenting/exposition_formats/

export type Format = 'openmetrics' | 'text';

export const CONTENT_TYPE: Record<Format, string> = {
  openmetrics: 'application/openmetrics-text; version=1.0.0; charset=utf-8',
  text: 'text/plain; version=0.0.4; charset=utf-8',
};

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  /** the family name; a counter's samples get "_total" appended (OpenMetrics "Counter") */
  name: string;
  type: 'counter' | 'gauge';
  /** base unit ("bytes", "seconds"); the name must end in "_<unit>" (OpenMetrics "UNIT") */
  unit?: string;
  help: string;
  samples: Sample[];
}

const NEEDS_ESCAPE = /[\\"\n]/;
/** Label values escape \, " and newline in both formats (OpenMetrics "Escaping"). Most
 *  values need none: a scrape writes 10,000s of them, so test before replacing. */
const escapeLabel = (v: string) =>
  NEEDS_ESCAPE.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
/** HELP: 0.0.4 escapes \ and newline; OpenMetrics also " (its HELP is an escaped-string). */
const escapeHelp = (v: string, format: Format) =>
  format === 'openmetrics' ? escapeLabel(v) : v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function labelText(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return pairs.length ? `{${pairs.join(',')}}` : '';
}

/** The exposition of `families` in `format`; families with no samples are left out. */
export function exposition(families: readonly MetricFamily[], format: Format): string {
  const lines: string[] = [];
  for (const f of families) {
    if (f.samples.length === 0) continue;
    const sampleName = f.type === 'counter' ? `${f.name}_total` : f.name;
    // 0.0.4 has no family name apart from the samples' and no UNIT line
    const described = format === 'openmetrics' ? f.name : sampleName;
    lines.push(`# HELP ${described} ${escapeHelp(f.help, format)}`, `# TYPE ${described} ${f.type}`);
    if (format === 'openmetrics' && f.unit) lines.push(`# UNIT ${described} ${f.unit}`);
    for (const s of f.samples) lines.push(`${sampleName}${labelText(s.labels)} ${formatValue(s.value)}`);
  }
  if (format === 'openmetrics') lines.push('# EOF');
  return `${lines.join('\n')}\n`;
}

/** OpenMetrics when the scraper accepts it (Prometheus lists it first), else 0.0.4. */
export function negotiate(accept: string | undefined): Format {
  return accept?.includes('application/openmetrics-text') ? 'openmetrics' : 'text';
}
