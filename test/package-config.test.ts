// The default /etc/ubia/ubia.toml the package ships: as shipped it means "built-in
// defaults", every commented "#key = value" line is the real default of that key, every
// key of the agent's tables and of [otlp] is documented there, and the exporter examples
// are valid configurations.
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
  .map((l) => (/^#(\[|[A-Za-z_]+ = )/.test(l) ? l.slice(1) : l))
  .join('\n');

function objectShape(s: z.ZodType): Record<string, z.ZodType> {
  let cur = s;
  for (;;) {
    const def = (cur as unknown as { _zod: { def: { type: string; innerType?: z.ZodType; in?: z.ZodType } } })._zod.def;
    if (cur instanceof z.ZodObject) return cur.shape as Record<string, z.ZodType>;
    const next = def.innerType ?? def.in;
    if (!next) throw new Error(`no object schema under ${def.type}`);
    cur = next;
  }
}

describe('packaging/ubia.toml', () => {
  const defaults = configSchema.parse({});

  it('as shipped, configures exactly the built-in defaults', () => {
    expect(parseConfig(text, 'ubia.toml')).toEqual(defaults);
  });

  it('shows the real default of every key of the agent tables and of [otlp]', () => {
    const parsed = parseConfig(uncommented, 'ubia.toml (uncommented)');
    for (const section of ['agent', 'ledger', 'control', 'log', 'otlp'] as const) {
      const expected = section === 'otlp' ? configSchema.shape.otlp.parse({}) : defaults[section];
      expect(parsed[section], `[${section}]`).toEqual(expected);
    }
  });

  it('documents every key of the agent tables and of [otlp]', () => {
    const raw = parseToml(uncommented) as Record<string, Record<string, unknown>>;
    for (const section of ['agent', 'ledger', 'control', 'log', 'otlp'] as const) {
      const keys = Object.keys(objectShape(configSchema.shape[section]));
      expect(Object.keys(raw[section] ?? {}).sort(), `[${section}]`).toEqual(keys.sort());
    }
  });

  it('has every key of those tables in the reference of docs/systemd.md', () => {
    const doc = readFileSync(new URL('../docs/systemd.md', import.meta.url), 'utf8');
    for (const section of ['agent', 'ledger', 'control', 'log', 'otlp'] as const) {
      const table = doc.slice(doc.indexOf(`### [${section}]`));
      expect(doc.includes(`### [${section}]`), `docs/systemd.md has no "### [${section}]"`).toBe(true);
      for (const key of Object.keys(objectShape(configSchema.shape[section]))) {
        expect(table, `[${section}] ${key} in docs/systemd.md`).toContain(`| \`${key}\` |`);
      }
    }
  });

  it('has valid [ipfix] and [diameter] examples', () => {
    const parsed = parseConfig(uncommented, 'ubia.toml (uncommented)');
    expect(parsed.ipfix?.collectors).toHaveLength(1);
    expect(parsed.diameter?.servers).toHaveLength(1);
  });
});
