// The configuration described once: packaging/ubia.toml, the README's key tables and the
// man page ubia.toml(5) are rendered from the zod schema (each key's description, default,
// range and example), by `npm run gen:config`; a unit test checks the committed files are
// exactly what this renders.
import { z } from 'zod';
import { configSchema } from './config.js';

export interface KeyDoc {
  key: string;
  /** the built-in default, when the key has one */
  default?: unknown;
  /** in words, for keys without a default value: "required", "none", "the host's name" */
  defaultWords?: string;
  meaning: string;
  /** allowed values: a range, or the choices of an enum */
  allowed?: string;
  /** shown in packaging/ubia.toml for keys without a default */
  example?: unknown;
}

export interface TableDoc {
  /** as written in TOML: "[agent]", "[[ipfix.collectors]]", "[ipfix.element_ids]" */
  header: string;
  meaning: string;
  keys: KeyDoc[];
}

type Def = { type: string; innerType?: z.ZodType; in?: z.ZodType; element?: z.ZodType };
const defOf = (s: z.ZodType) => (s as unknown as { _zod: { def: Def } })._zod.def;

/** The schema and every wrapper (default, optional, prefault, pipe) around it, outermost first. */
function layers(s: z.ZodType): z.ZodType[] {
  const out = [s];
  for (let d = defOf(s); d.innerType ?? d.in; d = defOf(out[out.length - 1]!)) out.push((d.innerType ?? d.in)!);
  return out;
}

const core = (s: z.ZodType) => layers(s).at(-1)!;
const described = (s: z.ZodType) => layers(s).find((l) => l.description)?.description ?? '';
const example = (s: z.ZodType) => layers(s).map((l) => z.globalRegistry.get(l)?.examples as unknown[] | undefined).find((e) => e)?.[0];

/** "…; default 60" / "…; default: the host's name" end a description: a default value is
 *  rendered from the schema, so the meaning is kept, with what the words add to the value
 *  ("default 32473, the number RFC 5612 reserves…"); for keys whose default is not a
 *  value, the words are the default. */
function meaningOf(description: string, value: unknown): { meaning: string; defaultWords?: string } {
  const m = /^(.*?);\s*default:?\s+(.*)$/s.exec(description);
  if (!m) return { meaning: description };
  const [, meaning, words] = m as unknown as [string, string, string];
  if (value === undefined) return { meaning, defaultWords: words };
  const said = String(value);
  if (!words.startsWith(said)) return { meaning: `${meaning} (default ${words})` };
  const more = words.slice(said.length).replace(/^[,.;]?\s*/, '');
  return { meaning: more ? `${meaning}; ${more}` : meaning };
}

/** Numbers as a reader wants them: 1/24 as 0.0417, not 0.041666666666666664. */
const num = (v: number) => (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3))));

function allowedOf(s: z.ZodType): string | undefined {
  const c = core(s);
  if (c instanceof z.ZodNumber) {
    const { minValue: min, maxValue: max } = c;
    const kind = c.format?.includes('int') ? 'an integer' : 'a number';
    const bound = (v: number | null) => (v === null || !Number.isFinite(v) || Math.abs(v) >= Number.MAX_SAFE_INTEGER ? undefined : v);
    const lo = bound(min);
    const hi = bound(max);
    if (lo !== undefined && hi !== undefined) return `${kind}, ${num(lo)} to ${num(hi)}`;
    if (lo !== undefined) return `${kind}, at least ${num(lo)}`;
    return kind;
  }
  if (c instanceof z.ZodEnum) return `one of ${c.options.map((o) => JSON.stringify(o)).join(', ')}`;
  if (c instanceof z.ZodBoolean) return 'true or false';
  if (c instanceof z.ZodLiteral) return `exactly ${[...c.values].map((v) => JSON.stringify(v)).join(' or ')}`;
  if (c instanceof z.ZodArray) {
    const e = core(defOf(c).element!);
    if (e instanceof z.ZodEnum) return `a list of ${e.options.map((o) => JSON.stringify(o)).join(', ')}`;
  }
  return undefined;
}

/** Every TOML table of the configuration, in schema order: a table's own keys, then its
 *  sub-tables ("[a.b]" for an object, "[[a.b]]" for an array of objects). */
export function describeConfig(): TableDoc[] {
  const tables: TableDoc[] = [];
  const walk = (schema: z.ZodType, header: string, path: string) => {
    const obj = core(schema);
    if (!(obj instanceof z.ZodObject)) return;
    const table: TableDoc = { header, meaning: described(schema), keys: [] };
    tables.push(table);
    const subTables: Array<() => void> = [];
    for (const [key, field] of Object.entries(obj.shape as Record<string, z.ZodType>)) {
      const c = core(field);
      const element = c instanceof z.ZodArray ? defOf(c).element! : undefined;
      if (c instanceof z.ZodObject) {
        subTables.push(() => walk(field, `[${path}.${key}]`, `${path}.${key}`));
        continue;
      }
      if (element && core(element) instanceof z.ZodObject) {
        subTables.push(() => walkArray(field, `${path}.${key}`));
        continue;
      }
      if (element && core(element) instanceof z.ZodUnion) {
        // tables of several kinds ([[control.roles]]): one of each, each described by its own kind
        const kinds = (core(element) as z.ZodUnion<z.ZodType[]>).options;
        subTables.push(() => {
          const first = tables.length;
          for (const kind of kinds) walk(kind, `[[${path}.${key}]]`, `${path}.${key}`);
          // what the tables are for as a whole opens the first of them
          tables[first]!.meaning = `${described(field)}. ${tables[first]!.meaning}`;
        });
        continue;
      }
      const d = field.safeParse(undefined);
      const value = d.success ? d.data : undefined;
      const { meaning, defaultWords } = meaningOf(described(field), value);
      const doc: KeyDoc = { key, meaning };
      if (value !== undefined) doc.default = value;
      else doc.defaultWords = d.success ? (defaultWords ?? 'none') : 'required';
      const allowed = allowedOf(field);
      if (allowed) doc.allowed = allowed;
      // a literal (the kind of a table, role = "manager") is its own example
      if (doc.default === undefined) doc.example = c instanceof z.ZodLiteral ? [...c.values][0] : example(field);
      table.keys.push(doc);
    }
    for (const t of subTables) t();
  };
  /** an array of tables ([[ipfix.collectors]], [[quota]]): the array's description says what its tables are for */
  const walkArray = (field: z.ZodType, path: string) => {
    walk(defOf(core(field)).element!, `[[${path}]]`, path);
    const t = tables.find((x) => x.header === `[[${path}]]`)!;
    t.meaning = described(field) || t.meaning;
  };
  for (const [section, schema] of Object.entries(configSchema.shape as Record<string, z.ZodType>)) {
    if (core(schema) instanceof z.ZodArray) walkArray(schema, section);
    else walk(schema, `[${section}]`, section);
  }
  return tables;
}

// ---- values -----------------------------------------------------------------------------

/** A value as TOML writes it (the configuration's values are strings, numbers, booleans,
 *  lists of strings and tables of strings). */
function toml(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(toml).join(', ')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v);
    return entries.length ? `{ ${entries.map(([k, x]) => `${k} = ${toml(x)}`).join(', ')} }` : '{}';
  }
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** Words wrapped at `width` columns, each line prefixed. */
function wrap(text: string, prefix: string, width = 90): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && prefix.length + line.length + 1 + word.length > width) {
      lines.push(prefix + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(prefix + line);
  return lines;
}

const sentence = (k: KeyDoc) => (k.allowed ? `${k.meaning} (${k.allowed})` : k.meaning);

// ---- packaging/ubia.toml ---------------------------------------------------------------

const TOML_HEAD = `# /etc/ubia/ubia.toml — configuration of the ubia agent (\`ubia agent\`, ubia.service).
#
# This file as shipped (everything commented out) runs the agent on its built-in
# defaults. Every key is listed: a line "#key = value" shows the key's default, or an
# example where the key has none (the comment above says "required" or what its absence
# means); remove the "#" to set one. An unknown key or a bad value stops the agent with
# "<file>:<line>: <key>: <problem>"; \`systemctl reload ubia\` (SIGHUP) re-reads the file
# and keeps the running configuration when the new one is invalid.
# Reference: man 5 ubia.toml; /usr/share/doc/ubia/ipfix.md and diameter.md.
#
# Generated from the configuration schema by \`npm run gen:config\`: do not edit by hand.
`;

export function renderToml(tables: TableDoc[]): string {
  const out: string[] = [TOML_HEAD.trimEnd()];
  for (const t of tables) {
    if (!t.header.slice(1).includes('.')) out.push('');
    out.push(...wrap(t.meaning, '# '), `#${t.header}`);
    for (const k of t.keys) {
      const absent = k.default === undefined ? `; ${k.defaultWords === 'required' ? 'required' : `without it: ${k.defaultWords}`}` : '';
      out.push(...wrap(sentence(k) + absent, '# '), `#${k.key} = ${toml(k.default ?? k.example)}`);
    }
  }
  return `${out.join('\n')}\n`;
}

// ---- README.md -------------------------------------------------------------------------

export const README_BEGIN = '<!-- config-tables: generated from the configuration schema by `npm run gen:config`; edit the schema, not these tables -->';
export const README_END = '<!-- /config-tables -->';

const cell = (s: string) => s.replace(/\|/g, '\\|');

export function renderReadmeTables(tables: TableDoc[]): string {
  const out: string[] = [README_BEGIN];
  for (const t of tables) {
    out.push('', `**\`${t.header}\`** ${cell(t.meaning)}`, '', '| key | default | meaning |', '|---|---|---|');
    for (const k of t.keys) {
      const def = k.default !== undefined ? `\`${JSON.stringify(k.default)}\`` : k.defaultWords!;
      out.push(`| \`${k.key}\` | ${cell(def)} | ${cell(sentence(k))} |`);
    }
  }
  out.push('', README_END);
  return out.join('\n');
}

/** README.md with the text between the markers replaced by the tables. */
export function spliceReadme(readme: string, tables: string): string {
  const from = readme.indexOf(README_BEGIN);
  const to = readme.indexOf(README_END);
  if (from < 0 || to < from) throw new Error(`README.md has no ${README_BEGIN} … ${README_END} markers: put them where the configuration tables go`);
  return readme.slice(0, from) + tables + readme.slice(to + README_END.length);
}

// ---- ubia.toml(5) ----------------------------------------------------------------------

/** Text safe in roff: backslashes escaped, no line starting with a control character. */
const roff = (s: string) => s.replace(/\\/g, '\\e').replace(/-/g, '\\-').replace(/^([.'])/gm, '\\&$1');

export function renderManPage(tables: TableDoc[], version: string): string {
  const out = [
    `.TH UBIA.TOML 5 "" "ubia ${version}" "File Formats"`,
    '.\\" Generated from the configuration schema by `npm run gen:config`: do not edit by hand.',
    '.SH NAME',
    'ubia.toml \\- configuration of the ubia agent',
    '.SH SYNOPSIS',
    '.I /etc/ubia/ubia.toml',
    '.SH DESCRIPTION',
    roff('The configuration of the ubia agent (ubia.service), in TOML. Every key is optional unless marked required; without a file the agent runs on the built-in defaults. An unknown key or table, a wrong type or an out-of-range value stops the agent with the file, line and key and what is allowed; a reload (SIGHUP, systemctl reload ubia) with a bad file keeps the running configuration and says why. An exporter is on when its table is present.'),
    '.SH TABLES',
  ];
  for (const t of tables) {
    out.push(`.SS ${roff(t.header)}`, roff(t.meaning));
    for (const k of t.keys) {
      const def = k.default !== undefined ? `Default: ${toml(k.default)}.` : k.defaultWords === 'required' ? 'Required.' : `Without it: ${k.defaultWords}.`;
      out.push('.TP', `.B ${roff(k.key)}`, roff(`${sentence(k)}. ${def}`));
    }
  }
  out.push('.SH FILES', '.TP', '.I /etc/ubia/ubia.toml', roff('the configuration, as shipped every key commented out with its default'), '.SH SEE ALSO', '.BR ubia (8)');
  return `${out.join('\n')}\n`;
}
