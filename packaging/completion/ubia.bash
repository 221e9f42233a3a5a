# bash completion for ubia. Generated from src/cli/program.ts by src/cli/docs.ts; do not edit.
_ubia() {
  local cur prev cmd i opts
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD-1]}"
  case "$prev" in
    --user|-u) COMPREPLY=($(compgen -u -- "$cur")); return ;;
    --config|-c|--socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --interval|-i|--iterations|-n|--processes|--since|--from|--to|--by|--top|--limit|--where|--group-by|--having|--order) return ;;
  esac
  cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${COMP_WORDS[i]}" in
      --config|-c|--socket) ((i++)) ;;
      -*) ;;
      *) cmd="${COMP_WORDS[i]}"; break ;;
    esac
  done
  case "$cmd" in
    "") opts="agent top users units report procs flows status quota detach --version --config --socket --help" ;;
    agent) opts="--daemon --help" ;;
    top) opts="--interval --once --iterations --processes --json --csv --help" ;;
    users) opts="--json --csv --since --from --to --utc --help" ;;
    units) opts="--by --user --json --csv --since --from --to --utc --help" ;;
    report) opts="--by --user --top --json --csv --since --from --to --utc --help" ;;
    procs) opts="--user --json --csv --help" ;;
    flows) opts="--user --limit --json --csv --since --from --to --utc --where --group-by --having --order --remotes --help" ;;
    status) opts="--json --help" ;;
    quota) opts="--user --json --csv --help" ;;
    detach) opts="--force --help" ;;
    *) opts="" ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _ubia ubia
