// `npm run gen:config`: writes packaging/ubia.toml, the README's configuration tables and
// the man page packaging/man/ubia.toml.5 from the configuration schema (src/config/document.ts).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describeConfig, renderManPage, renderReadmeTables, renderToml, spliceReadme } from '../src/config/document.js';

const ROOT = join(import.meta.dirname, '..');
const tables = describeConfig();
const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const write = (path: string, text: string) => {
  mkdirSync(dirname(join(ROOT, path)), { recursive: true });
  writeFileSync(join(ROOT, path), text);
  console.log(`wrote ${path}`);
};
write('packaging/ubia.toml', renderToml(tables));
write('README.md', spliceReadme(readFileSync(join(ROOT, 'README.md'), 'utf8'), renderReadmeTables(tables)));
write('packaging/man/ubia.toml.5', renderManPage(tables, version));
