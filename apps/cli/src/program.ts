import { Command, CommanderError, Option } from 'commander';
import { CliError } from './cli-error';
import { CliRuntime, type CliIo } from './cli-runtime';
import { registerAccess } from './commands/access.command';
import { registerAudit } from './commands/audit.command';
import { registerCompletion } from './commands/completion.command';
import { registerConfig } from './commands/config.command';
import { registerRemotes } from './commands/remotes.command';
import { registerResources } from './commands/resources.command';
import { registerTasks } from './commands/tasks.command';
import { registerVm } from './commands/vm.command';
import { EXIT } from './exit-codes';
import { OUTPUT_FORMATS } from './output/render';

export const VERSION = '0.1.0';

const EXIT_HELP = `
Examples:
  $ debvisor config set-context lab --server https://manager:8443 --ca-file server-ca.crt --token-stdin < token
  $ debvisor resources type:vm status:running
  $ debvisor vm migrate dc-east web-1 --target-node node-2
  $ DEBVISOR_TOKEN=$(cat ci.token) debvisor -o json tasks list --state failed

Exit codes (docs/cli.md):
  0 ok · 1 failed · 2 usage or invalid request · 3 no/bad token (401) · 4 forbidden (403)
  5 not found (404) · 6 conflict or busy (409, 429) · 7 manager unreachable or TLS pin failed
  8 task failed/cancelled or test failed · 9 audit chain broken · 10 not confirmed

Authentication: DEBVISOR_TOKEN, or the token of the context in the config file
(~/.config/debvisor/config.yaml, mode 0600). Never put a token on the command line.`;

/** The whole command tree; `runtime` carries the streams, the environment and the client. */
export function buildProgram(runtime: CliRuntime): Command {
  const program = new Command('debvisor')
    .description('Drive a DebVisor Datacenter Manager from a terminal or a script')
    .version(VERSION)
    .option(
      '--context <name>',
      'the context of the config file to use (default: its current-context, or DEBVISOR_CONTEXT)',
    )
    .option(
      '--config <file>',
      'the config file (default: DEBVISOR_CONFIG or ~/.config/debvisor/config.yaml)',
    )
    .addOption(
      new Option('-o, --output <format>', 'how to print answers')
        .choices(OUTPUT_FORMATS)
        .default('table'),
    )
    .addHelpText('after', EXIT_HELP)
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({
      writeOut: (text) => runtime.io.stdout.write(text),
      writeErr: (text) => runtime.io.stderr.write(text),
      outputError: (text, write) => write(`debvisor: ${text}`),
    })
    .exitOverride();
  registerConfig(program, runtime);
  registerRemotes(program, runtime);
  registerResources(program, runtime);
  registerVm(program, runtime);
  registerTasks(program, runtime);
  registerAudit(program, runtime);
  registerAccess(program, runtime);
  registerCompletion(program, runtime);
  // Every command, however deep, writes through the runtime and never exits the process itself.
  const walk = (command: Command): void => {
    command
      .exitOverride()
      .configureOutput({
        writeOut: (text) => runtime.io.stdout.write(text),
        writeErr: (text) => runtime.io.stderr.write(text),
        outputError: (text, write) => write(`debvisor: ${text}`),
      })
      .showHelpAfterError('(add --help for usage)');
    command.commands.forEach(walk);
  };
  walk(program);
  return program;
}

/** Runs the CLI with `argv` (the arguments after the program name) and answers the exit code. */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const runtime = new CliRuntime(io);
  const program = buildProgram(runtime);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return runtime.exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end well; help shown for a missing command and every other parse
      // error are usage errors
      if (['commander.helpDisplayed', 'commander.version'].includes(error.code)) return EXIT.ok;
      return EXIT.usage;
    }
    if (error instanceof CliError) {
      const extra = [
        error.status ? `HTTP ${error.status}` : undefined,
        error.code ? `code ${error.code}` : undefined,
        error.traceId ? `trace id ${error.traceId}` : undefined,
      ].filter(Boolean);
      io.stderr.write(
        `debvisor: ${error.message}${extra.length ? ` (${extra.join(', ')})` : ''}\n`,
      );
      return error.exitCode;
    }
    io.stderr.write(
      `debvisor: unexpected failure: ${(error as Error)?.message ?? String(error)}\n`,
    );
    return EXIT.failed;
  } finally {
    await runtime.close();
  }
}
