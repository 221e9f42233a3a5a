// The configuration is described once, in the zod schema: packaging/ubia.toml, the
// README's key tables and the man page ubia.toml(5) are what `npm run gen:config` renders
// from it, byte for byte.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeConfig, README_BEGIN, README_END, renderManPage, renderReadmeTables, renderToml } from '../src/config/document.js';

const ROOT = join(import.meta.dirname, '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const tables = describeConfig();
const STALE = 'is not what the schema says: run `npm run gen:config` and commit the result';

describe('configuration documents generated from the schema', () => {
  it('packaging/ubia.toml', () => {
    expect(read('packaging/ubia.toml'), `packaging/ubia.toml ${STALE}`).toBe(renderToml(tables));
  });

  it("README.md's key tables", () => {
    const readme = read('README.md');
    const from = readme.indexOf(README_BEGIN);
    const to = readme.indexOf(README_END) + README_END.length;
    expect(from, 'README.md has the generated-tables markers').toBeGreaterThanOrEqual(0);
    expect(readme.slice(from, to), `README.md's configuration tables ${STALE}`).toBe(renderReadmeTables(tables));
  });

  it('packaging/man/ubia.toml.5', () => {
    const version = (JSON.parse(read('package.json')) as { version: string }).version;
    expect(read('packaging/man/ubia.toml.5'), `packaging/man/ubia.toml.5 ${STALE}`).toBe(renderManPage(tables, version));
  });

  it('documents every key with a meaning, and a default, "required" or what its absence means', () => {
    const keys = tables.flatMap((t) => t.keys.map((k) => ({ table: t.header, ...k })));
    expect(keys.length).toBeGreaterThan(60);
    expect(keys.filter((k) => !k.meaning || (k.default === undefined && !k.defaultWords))).toEqual([]);
    // every key without a default has an example, so the shipped file, uncommented, parses
    expect(keys.filter((k) => k.default === undefined && k.example === undefined).map((k) => `${k.table} ${k.key}`)).toEqual([]);
  });
});
