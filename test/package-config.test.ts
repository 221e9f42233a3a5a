// The default /etc/ubia/ubia.toml the package ships: as shipped it means "built-in
// defaults"; every key of every table of the real config schema (exporters and their
// nested tables included) is listed there; every commented "#key = value" line of a key
// that has a default shows that default; uncommented, the file is a valid configuration.
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseConfig } from '../src/config/load.js';
import { configSchema } from '../src/config/config.js';

const FILE = new URL('../packaging/ubia.toml', import.meta.url);
const text = readFileSync(FILE, 'utf8');
/** The file with its settings uncommented: "#key = v" / "#[table]" / "#[[array]]" lines. */
const uncommented = text
  .split('\n')
  .map((l) => (/^#(\[|[A-Za-z0-9_]+ = )/.test(l) ? l.slice(1) : l))
  .join('\n');
const raw = parseToml(uncommented) as Record<string, unknown>;
const SECTIONS = Object.keys(configSchema.shape) as Array<keyof typeof configSchema.shape>;

type ZodDef = { type: string; innerType?: z.ZodType; in?: z.ZodType; element?: z.ZodType; options?: z.ZodType[] };
/** Under optional/default/pipe wrappers: an object's fields, an array's element, the kinds
 *  of a union of tables ([[control.roles]]), or a leaf. */
function unwrap(s: z.ZodType): { fields: Record<string, z.ZodType> } | { element: z.ZodType } | { kinds: z.ZodType[] } | undefined {
  for (let cur = s; ; ) {
    if (cur instanceof z.ZodObject) return { fields: cur.shape as Record<string, z.ZodType> };
    const def = (cur as unknown as { _zod: { def: ZodDef } })._zod.def;
    if (def.type === 'array') return { element: def.element! };
    if (def.type === 'union') return { kinds: def.options! };
    const next = def.innerType ?? def.in;
    if (!next) return undefined;
    cur = next;
  }
}

/** Visits every key the schema defines, with the file's value for it (undefined = absent),
 *  down into nested tables and the first table of each array of tables. */
function visit(schema: z.ZodType, value: unknown, path: string, f: (path: string, key: z.ZodType, value: unknown) => void): void {
  const u = unwrap(schema);
  if (!u) return;
  if ('element' in u) {
    if (!Array.isArray(value)) return;
    // a union of tables: each kind's first table in the file; else the first table
    const kinds = unwrap(u.element);
    if (kinds && 'kinds' in kinds) kinds.kinds.forEach((k, i) => visit(k, value[i], `${path}[${i}]`, f));
    else if (typeof value[0] === 'object') visit(u.element, value[0], `${path}[0]`, f);
    return;
  }
  if ('kinds' in u) return;
  for (const [key, field] of Object.entries(u.fields)) {
    const v = (value as Record<string, unknown> | undefined)?.[key];
    f(`${path}.${key}`, field, v);
    visit(field, v, `${path}.${key}`, f);
  }
}

describe('packaging/ubia.toml', () => {
  const defaults = configSchema.parse({});

  it('as shipped, configures exactly the built-in defaults', () => {
    expect(parseConfig(text, 'ubia.toml')).toEqual(defaults);
  });

  it('lists every key of every table, the exporters\' nested tables included', () => {
    const missing: string[] = [];
    for (const section of SECTIONS) {
      visit(configSchema.shape[section], raw[section], section, (path, _f, v) => v === undefined && missing.push(path));
    }
    expect(missing).toEqual([]);
  });

  it('shows the real default of every key that has one', () => {
    const wrong: string[] = [];
    for (const section of SECTIONS) {
      visit(configSchema.shape[section], raw[section], section, (path, field, v) => {
        const d = field.safeParse(undefined);
        if (d.success && d.data !== undefined && JSON.stringify(d.data) !== JSON.stringify(v)) {
          wrong.push(`${path}: file says ${JSON.stringify(v)}, default is ${JSON.stringify(d.data)}`);
        }
      });
    }
    expect(wrong).toEqual([]);
  });

  it('is a valid configuration with every example table uncommented', () => {
    const parsed = parseConfig(uncommented, 'ubia.toml (uncommented)');
    expect(parsed.otlp).toEqual(configSchema.shape.otlp.parse({}));
    expect(parsed.ipfix?.collectors).toHaveLength(1);
    expect(parsed.diameter?.servers).toHaveLength(1);
    expect(parsed.diameter?.tls).toBeDefined();
  });

  it('has every key of every table, with its real default, in the README\'s configuration reference', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const wrong: string[] = [];
    /** Each table of the schema as it is written in TOML ("[ipfix]", "[[ipfix.collectors]]"),
     *  with its leaf keys: sub-tables are tables of their own. */
    const check = (schema: z.ZodType, table: string, header: string, nth = 0) => {
      const u = unwrap(schema);
      if (!u || !('fields' in u)) return;
      // the nth table of that header (a union of tables has one per kind)
      let at = -1;
      for (let i = 0; i <= nth; i++) at = readme.indexOf(`**\`${header}\`**`, at + 1);
      if (at < 0) return void wrong.push(`README has no table **\`${header}\`**`);
      const rows = readme.slice(at, readme.indexOf('\n\n**', at + 1) >>> 0);
      for (const [key, field] of Object.entries(u.fields)) {
        const inner = unwrap(field);
        if (inner && 'fields' in inner) check(field, `${table}.${key}`, `[${table}.${key}]`);
        else if (inner && 'element' in inner && unwrap(inner.element)) {
          const element = unwrap(inner.element)!;
          const kinds = 'kinds' in element ? element.kinds : [inner.element];
          kinds.forEach((k, i) => check(k, `${table}.${key}`, `[[${table}.${key}]]`, i));
        }
        else {
          // a row "| `key` | `default` | meaning |"; keys without a default say so in words
          const documented = new RegExp(`^\\| \`${key}\` \\| ([^|]*) \\|`, 'm').exec(rows)?.[1];
          const d = field.safeParse(undefined);
          const real = d.success && d.data !== undefined ? `\`${JSON.stringify(d.data)}\`` : undefined;
          if (documented === undefined || (real !== undefined && documented !== real))
            wrong.push(`${header} ${key}: README says ${documented ?? 'nothing'}, default is ${real ?? 'none'}`);
        }
      }
    };
    for (const section of SECTIONS) check(configSchema.shape[section], section, `[${section}]`);
    expect(wrong).toEqual([]);
  });
});
