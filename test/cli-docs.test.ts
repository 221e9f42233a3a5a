// ubia(8) and the shell completions come from the same commander definitions as --help:
// the committed files are exactly what `npm run gen:cli` writes, the man page renders
// without warnings, and bash completes subcommands, options and user names.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliDocs, CLI_DOC_FILES } from '../src/cli/docs.js';
import { buildProgram } from '../src/cli/program.js';

const ROOT = join(import.meta.dirname, '..');
const docs = cliDocs(buildProgram());
const BASH = join(ROOT, CLI_DOC_FILES.bash);

/** What bash offers for the words typed so far (the last one being completed). */
function complete(...words: string[]): string[] {
  const script = `source ${BASH}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _ubia; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  return r.stdout.split('\n').filter(Boolean);
}

describe('generated command-line docs', () => {
  for (const kind of ['man', 'bash', 'zsh'] as const) {
    it(`${CLI_DOC_FILES[kind]} is up to date (npm run gen:cli)`, () => {
      expect(readFileSync(join(ROOT, CLI_DOC_FILES[kind]), 'utf8')).toBe(docs[kind]);
    });
  }

  it('ubia(8) names every command and option --help does, and renders cleanly', () => {
    const r = spawnSync('man', ['--warnings', '-P', 'cat', '-l', join(ROOT, CLI_DOC_FILES.man)], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '80' } });
    expect(r.stderr).toBe('');
    const page = r.stdout.replace(/‐\n\s+/g, ''); // words hyphenated across lines
    for (const cmd of buildProgram().commands) {
      expect(page).toContain(`ubia ${cmd.name()} [options]`);
      for (const o of cmd.options) expect(page).toContain(o.long!);
    }
    expect(page).toContain('--processes <n>');
    expect(page).toMatch(/EXIT STATUS[\s\S]*2\s+the agent is not running/);
  });

  it('bash completes subcommands, their options and user names', () => {
    expect(complete('ubia', '')).toEqual(expect.arrayContaining(['agent', 'top', 'users', 'procs', 'flows', 'status', 'detach', '--config']));
    expect(complete('ubia', 'st')).toEqual(['status']);
    expect(complete('ubia', 'flows', '--')).toEqual(['--user', '--limit', '--json', '--csv', '--help']);
    expect(complete('ubia', '--config', '/etc/ubia.toml', 'top', '--pro')).toEqual(['--processes']);
    expect(complete('ubia', 'procs', '-u', 'roo')).toEqual(['root']);
    expect(complete('ubia', 'top', '--processes', '')).toEqual([]);
  });

  it('the zsh completion is a #compdef function for ubia listing every command', () => {
    expect(docs.zsh.startsWith('#compdef ubia\n')).toBe(true);
    for (const cmd of buildProgram().commands) expect(docs.zsh).toContain(`'${cmd.name()}:`);
    expect(docs.zsh).toContain("'(-u --user)'{-u,--user}'[only this user]:user:_users'");
    const parse = spawnSync('zsh', ['-n', join(ROOT, CLI_DOC_FILES.zsh)], { encoding: 'utf8' });
    expect([parse.status, parse.stderr]).toEqual([0, '']);
  });
});
