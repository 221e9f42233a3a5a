// The man page ubia(8) and the bash and zsh completions, written from the commander
// definitions (program.ts) that --help shows, so the three cannot disagree with it.
import type { Command, Option } from 'commander';

export interface CliDocs {
  /** roff, man(7) macros */
  man: string;
  /** bash-completion script for /usr/share/bash-completion/completions/ubia */
  bash: string;
  /** zsh completion function for /usr/share/zsh/vendor-completions/_ubia */
  zsh: string;
}

const visibleOptions = (c: Command): Option[] => c.options.filter((o) => !o.hidden);
/** options whose value is a user name (completed from the user database) */
const USER_OPTIONS = new Set(['--user']);
/** options whose value is a file or a socket path */
const PATH_OPTIONS = new Set(['--config', '--socket']);

/** man(7) escapes: backslashes, and a leading dot or quote that would read as a request. */
const roff = (text: string) => text.replace(/\\/g, '\\e').replace(/-/g, '\\-').replace(/^([.'])/gm, '\\&$1');

function optionItem(o: Option): string {
  const flags = roff(o.flags)
    .replace(/(\\-[\w\\-]+)/g, '\\fB$1\\fR')
    .replace(/(<[^>]+>|\[[^\]]+\])/g, '\\fI$1\\fR');
  const fallback = o.defaultValue !== undefined && o.defaultValue !== false ? ` (default: ${roff(String(o.defaultValue))})` : '';
  return `.TP\n${flags}\n${roff(o.description)}${fallback}`;
}

function manPage(program: Command): string {
  const commands = program.commands.map((c) =>
    [
      `.SS ${roff(`ubia ${c.name()}`)}${c.usage() ? ` ${roff(c.usage())}` : ''}`,
      roff(c.description()),
      ...visibleOptions(c).map(optionItem),
    ].join('\n'),
  );
  return `${[
    `.\\" Generated from the ubia command definitions (src/cli/program.ts) by src/cli/docs.ts; do not edit.`,
    '.TH UBIA 8 "" "ubia" "System Administration"',
    '.SH NAME',
    `ubia \\- ${roff(program.description())}`,
    '.SH SYNOPSIS',
    `\\fBubia\\fR [\\fB\\-\\-config\\fR \\fIfile\\fR] [\\fB\\-\\-socket\\fR \\fIpath\\fR] \\fIcommand\\fR [\\fIoptions\\fR]`,
    '.SH DESCRIPTION',
    'ubia meters every byte a host sends and receives per user, process and flow with eBPF,',
    'keeps the totals in a SQLite ledger and answers the commands below over a local control',
    'socket. What a caller sees depends on their access role (root, control.admin_group,',
    'control.roles, or their own usage only).',
    '.SH OPTIONS',
    ...visibleOptions(program).map(optionItem),
    '.SH COMMANDS',
    ...commands,
    '.SH EXIT STATUS',
    '.TP\n0\ndone',
    '.TP\n1\nbad usage, or the agent refused the request',
    '.TP\n2\nthe agent is not running (the message says how to start it)',
    '.SH ENVIRONMENT',
    '.TP\nUBIA_SOCKET\nthe control socket, as \\fB\\-\\-socket\\fR',
    '.SH FILES',
    '.TP\n/etc/ubia/ubia.toml\nthe configuration, see \\fBubia.toml\\fR(5)',
    '.TP\n/run/ubia/control.sock\nthe control socket (control.socket)',
    '.TP\n/run/ubia/control.sock.admin\nthe control socket of root and control.admin_group, used first when the caller can open it',
    '.SH SEE ALSO',
    '\\fBubia.toml\\fR(5), /usr/share/doc/ubia/',
  ].join('\n')}\n`;
}

const longFlags = (c: Command) => visibleOptions(c).flatMap((o) => (o.long ? [o.long] : []));
const valueFlags = (c: Command, set: Set<string>) =>
  visibleOptions(c)
    .filter((o) => o.long && set.has(o.long))
    .flatMap((o) => [o.long, o.short].filter((f): f is string => !!f));

function bashCompletion(program: Command): string {
  const globals = [...new Set(longFlags(program).concat('--help', '--version'))];
  const cases = program.commands.map((c) => `    ${c.name()}) opts="${longFlags(c).concat('--help').join(' ')}" ;;`);
  const userFlags = [...new Set(program.commands.flatMap((c) => valueFlags(c, USER_OPTIONS)))];
  const pathFlags = valueFlags(program, PATH_OPTIONS);
  const takesValue = [...new Set([program, ...program.commands].flatMap((c) => visibleOptions(c).filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short])))].filter(Boolean);
  return `# bash completion for ubia. Generated from src/cli/program.ts by src/cli/docs.ts; do not edit.
_ubia() {
  local cur prev cmd i opts
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  case "$prev" in
    ${userFlags.join('|')}) COMPREPLY=($(compgen -u -- "$cur")); return ;;
    ${pathFlags.join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    ${takesValue.filter((f) => !userFlags.includes(f!) && !pathFlags.includes(f!)).join('|')}) return ;;
  esac
  cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      ${pathFlags.join('|')}) ((i++)) ;;
      -*) ;;
      *) cmd="\${COMP_WORDS[i]}"; break ;;
    esac
  done
  case "$cmd" in
    "") opts="${program.commands.map((c) => c.name()).join(' ')} ${globals.join(' ')}" ;;
${cases.join('\n')}
    *) opts="" ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _ubia ubia
`;
}

/** zsh _arguments spec of one option: "--user[only this user]:user:_users". */
function zshSpec(o: Option): string {
  const desc = o.description.replace(/[[\]:\\']/g, (ch) => (ch === "'" ? `'\\''` : `\\${ch}`));
  const names = [o.short, o.long].filter(Boolean) as string[];
  const value = !(o.required || o.optional) ? '' : o.long && USER_OPTIONS.has(o.long) ? ':user:_users' : o.long && PATH_OPTIONS.has(o.long) ? ':file:_files' : `:${o.long!.slice(2)}: `;
  const spec = (n: string) => `'${n}[${desc}]${value}'`;
  return names.length > 1 ? `'(${names.join(' ')})'{${names.join(',')}}'[${desc}]${value}'` : spec(names[0]!);
}

function zshCompletion(program: Command): string {
  const commands = program.commands.map((c) => `    '${c.name()}:${c.description().replace(/[:'\\]/g, ' ')}'`);
  const cases = program.commands.map((c) => `        ${c.name()}) _arguments ${visibleOptions(c).map(zshSpec).join(' ')} ;;`);
  return `#compdef ubia
# zsh completion for ubia. Generated from src/cli/program.ts by src/cli/docs.ts; do not edit.
_ubia() {
  local -a commands
  commands=(
${commands.join('\n')}
  )
  local curcontext="$curcontext" state line
  _arguments -C ${visibleOptions(program).map(zshSpec).join(' ')} '1:command:->command' '*::arg:->args'
  case $state in
    command) _describe 'ubia command' commands ;;
    args)
      case $line[1] in
${cases.join('\n')}
      esac ;;
  esac
}
_ubia "$@"
`;
}

export function cliDocs(program: Command): CliDocs {
  return { man: manPage(program), bash: bashCompletion(program), zsh: zshCompletion(program) };
}

/** Where the generated files live in the tree (and the .deb installs them from). */
export const CLI_DOC_FILES: Record<keyof CliDocs, string> = {
  man: 'packaging/man/ubia.8',
  bash: 'packaging/completion/ubia.bash',
  zsh: 'packaging/completion/_ubia',
};
