// `npm run gen:cli`: writes ubia(8) and the shell completions from the command definitions
// (test/cli-docs.test.ts checks the committed files are exactly what this writes).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cliDocs, CLI_DOC_FILES } from './docs.js';
import { buildProgram } from './program.js';

const root = join(import.meta.dirname, '..', '..');
const docs = cliDocs(buildProgram());
for (const [kind, file] of Object.entries(CLI_DOC_FILES) as [keyof typeof docs, string][]) {
  mkdirSync(dirname(join(root, file)), { recursive: true });
  writeFileSync(join(root, file), docs[kind]);
  process.stdout.write(`wrote ${file}\n`);
}
