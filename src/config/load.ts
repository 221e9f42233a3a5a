// Reads and validates the agent's TOML config. A bad file is refused with one line per
// problem: "<file>:<line>: <key>: <what is wrong> (allowed: <what the key means>)".
import { readFileSync } from 'node:fs';
import { parse as parseToml, TomlError } from 'smol-toml';
import { z } from 'zod';
import { locateKey } from './locate.js';
import { configSchema, type UbiaConfig } from './config.js';
import { groupMembers, userByName } from '../kernel/native.js';
import { parseMatch } from './quota.js';

export const DEFAULT_CONFIG_PATH = '/etc/ubia/ubia.toml';

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration ${file}:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Path = readonly PropertyKey[];
interface WrapperDef {
  type: string;
  innerType?: z.ZodType;
}

/** The schema under default/prefault/optional wrappers. */
function unwrap(s: z.ZodType): z.ZodType {
  let cur = s;
  for (;;) {
    const def: WrapperDef = (cur as unknown as { _zod: { def: WrapperDef } })._zod.def;
    if (!def.innerType || !['default', 'prefault', 'optional', 'nullable', 'readonly'].includes(def.type)) return cur;
    cur = def.innerType;
  }
}

/** The (still wrapped, so still described) schema of the key at `path`. */
function schemaAt(path: Path): z.ZodType | undefined {
  let s: z.ZodType | undefined = configSchema;
  for (const key of path) {
    const parent: z.ZodType = unwrap(s!);
    if (parent instanceof z.ZodObject) s = (parent.shape as Record<string, z.ZodType>)[String(key)];
    else if (parent instanceof z.ZodArray) s = parent.element as z.ZodType;
    else return undefined;
    if (!s) return undefined;
  }
  return s;
}

const pathText = (path: Path) => path.map(String);

function formatIssue(text: string, file: string, issue: z.core.$ZodIssue): string {
  const path = issue.path;
  if (issue.code === 'unrecognized_keys') {
    const found = schemaAt(path);
    const parent = found && unwrap(found);
    const allowed = parent instanceof z.ZodObject ? Object.keys(parent.shape).join(', ') : '';
    return issue.keys
      .map((k) => {
        const full = [...pathText(path), k];
        const line = locateKey(text, full);
        return `${file}:${line ?? '?'}: ${full.join('.')}: unknown key${path.length ? ` in [${path.join('.')}]` : ''}; allowed keys: ${allowed}`;
      })
      .join('\n  ');
  }
  const line = locateKey(text, pathText(path));
  const what = schemaAt(path)?.description;
  const key = path.length ? path.join('.') : '(top level)';
  return `${file}:${line ?? '?'}: ${key}: ${issue.message}${what ? ` (allowed: ${what})` : ''}`;
}

/** What validation asks of the system: the schema alone cannot know the host's groups. */
export interface HostFacts {
  groupExists(name: string): boolean;
  userExists(name: string): boolean;
}

/** Checks of the config against the host; issues in the schema's own shape. */
function hostIssues(config: UbiaConfig, host: HostFacts): z.core.$ZodIssue[] {
  const issues: z.core.$ZodIssue[] = [];
  const group = config.control.admin_group;
  if (group !== '' && !host.groupExists(group)) {
    issues.push({
      code: 'custom',
      path: ['control', 'admin_group'],
      message: `no group "${group}" exists on this host (NSS): create it, or leave the key empty for root only`,
      input: group,
    });
  }
  (config.quota ?? []).forEach((rule, i) => {
    const m = parseMatch(rule.match);
    const missing = m?.kind === 'user' ? !host.userExists(m.name) : m?.kind === 'group' ? !host.groupExists(m.name) : false;
    if (missing) {
      issues.push({ code: 'custom', path: ['quota', i, 'match'], message: `no ${m!.kind} "${(m as { name: string }).name}" exists on this host (NSS): a typo would leave the rule without effect`, input: rule.match });
    }
  });
  return issues;
}

/** Parses and validates config text; `file` is only used in error messages. */
export function parseConfig(text: string, file: string, host?: HostFacts): UbiaConfig {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      throw new ConfigError(file, [`${file}:${e.line}:${e.column}: TOML syntax error: ${first}`]);
    }
    throw e;
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(file, result.error.issues.map((i) => formatIssue(text, file, i)));
  }
  const issues = host ? hostIssues(result.data, host) : [];
  if (issues.length) throw new ConfigError(file, issues.map((i) => formatIssue(text, file, i)));
  return result.data;
}

const systemFacts: HostFacts = { groupExists: (name) => groupMembers(name) !== undefined, userExists: (name) => userByName(name) !== undefined };

export interface LoadedConfig {
  config: UbiaConfig;
  /** the file read, or undefined when running on built-in defaults */
  file: string | undefined;
}

/** Loads `file`, or the default path; a missing default file means built-in defaults,
 *  a missing file that was asked for explicitly is an error. */
export function loadConfig(file?: string): LoadedConfig {
  const path = file ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && file === undefined) return { config: configSchema.parse({}), file: undefined };
    throw new ConfigError(path, [`${path}: cannot read the config file (${code ?? String(e)}); pass an existing file with --config`]);
  }
  return { config: parseConfig(text, path, systemFacts), file: path };
}
