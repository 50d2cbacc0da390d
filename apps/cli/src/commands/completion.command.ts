import type { Command } from 'commander';
import { CliError } from '../cli-error';
import type { CliRuntime } from '../cli-runtime';

/** Every command path ('' for the top, 'vm snapshot' …) with the words that may follow it. */
export function completionWords(program: Command): Map<string, string[]> {
  const globals = program.options.map((o) => o.long).filter((x): x is string => !!x);
  const map = new Map<string, string[]>();
  const walk = (command: Command, path: string): void => {
    const subs = command.commands.map((c) => c.name());
    const options = command.options.map((o) => o.long).filter((x): x is string => !!x);
    map.set(path, [...subs, ...new Set([...options, ...globals, '--help'])]);
    for (const sub of command.commands) walk(sub, path ? `${path} ${sub.name()}` : sub.name());
  };
  walk(program, '');
  return map;
}

function wordsFunction(map: Map<string, string[]>): string {
  const cases = [...map]
    .map(([path, words]) => `    '${path}') echo '${words.join(' ')}' ;;`)
    .join('\n');
  return `_debvisor_words() {
  case "$1" in
${cases}
  esac
}`;
}

/** The bash script: complete -F over the command tree (commands, then their options). */
export function bashCompletion(map: Map<string, string[]>): string {
  return `# debvisor bash completion: source it, or save it as /etc/bash_completion.d/debvisor
${wordsFunction(map)}
_debvisor() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    if [[ " $(_debvisor_words "$path") " == *" $w "* ]]; then path="\${path:+$path }$w"; fi
  done
  COMPREPLY=($(compgen -W "$(_debvisor_words "$path")" -- "$cur"))
}
complete -F _debvisor debvisor
`;
}

/** The zsh script: a completion function for compinit (save as _debvisor in $fpath) or to source. */
export function zshCompletion(map: Map<string, string[]>): string {
  return `#compdef debvisor
# debvisor zsh completion: save as _debvisor in a folder of $fpath, or source it after compinit
${wordsFunction(map)}
_debvisor() {
  local path_="" w i
  for ((i = 2; i < CURRENT; i++)); do
    w="\${words[i]}"
    [[ "$w" == -* ]] && continue
    if [[ " $(_debvisor_words "$path_") " == *" $w "* ]]; then path_="\${path_:+$path_ }$w"; fi
  done
  compadd -- \${=$(_debvisor_words "$path_")}
}
if [[ "\${zsh_eval_context[-1]}" == loadautofunc ]]; then
  _debvisor "$@"
else
  compdef _debvisor debvisor
fi
`;
}

/** `debvisor completion bash|zsh`: prints the shell's completion script. */
export function registerCompletion(program: Command, runtime: CliRuntime): void {
  program
    .command('completion <shell>')
    .description('Print the shell completion script (bash or zsh)')
    .addHelpText(
      'after',
      `
Examples:
  $ source <(debvisor completion bash)                       # this bash session
  $ debvisor completion bash | sudo tee /etc/bash_completion.d/debvisor
  $ debvisor completion zsh > "\${fpath[1]}/_debvisor"          # zsh, then restart it`,
    )
    .action((shell: string) => {
      const map = completionWords(program);
      if (shell === 'bash') runtime.io.stdout.write(bashCompletion(map));
      else if (shell === 'zsh') runtime.io.stdout.write(zshCompletion(map));
      else throw CliError.usage('the shell must be bash or zsh');
    });
}
