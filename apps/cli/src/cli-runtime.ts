import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { CliError } from './cli-error';
import { resolveConnection, type CliEnv } from './config/cli-config';
import { EXIT } from './exit-codes';
import { createApiClient, type ApiClient } from './http/api-client';
import { openTransport, type ManagerTransport } from './http/manager-transport';
import { parseOutputFormat, render, type OutputFormat } from './output/render';

/** Where the CLI writes and reads: the process's streams in main.ts, collectors in tests. */
export interface CliIo {
  readonly env: CliEnv;
  readonly stdout: { write(text: string): unknown; isTTY?: boolean };
  readonly stderr: { write(text: string): unknown; isTTY?: boolean; columns?: number };
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  /** How often a follower polls (ms); tests leave the default. */
  readonly pollIntervalMs?: number;
}

/** The options every command inherits from the program. */
interface GlobalOptions {
  context?: string;
  config?: string;
  output: string;
}

/** What a command's action gets: output, the typed API client, prompts. */
export class CliRuntime {
  private transports: ManagerTransport[] = [];
  /** The exit code of a command that ends without an error but must not answer 0 (a failed test). */
  exitCode: number = EXIT.ok;

  constructor(readonly io: CliIo) {}

  private globals(command: Command): GlobalOptions {
    return command.optsWithGlobals<GlobalOptions>();
  }

  format(command: Command): OutputFormat {
    return parseOutputFormat(this.globals(command).output);
  }

  /** The typed client for the command's context; a command that needs the manager needs a token. */
  async api(command: Command): Promise<ApiClient> {
    const connection = resolveConnection(this.io.env, this.globals(command));
    if (!connection.token)
      throw new CliError(
        'no API token: set DEBVISOR_TOKEN or add one to the context (debvisor config set-context --token-stdin)',
        EXIT.unauthenticated,
      );
    const transport = await openTransport(connection);
    this.transports.push(transport);
    return createApiClient(transport);
  }

  /** Prints the data as the command's --output asks: human text (the callback) or JSON/YAML. */
  print(command: Command, data: unknown, human: () => string): void {
    this.io.stdout.write(render(this.format(command), data, human));
  }

  /** A line for people (stderr, so that stdout stays the data for scripts). */
  note(text: string): void {
    this.io.stderr.write(`${text}\n`);
  }

  /**
   * Asks yes/no on the terminal; `--yes` answers yes. Without a terminal and without --yes the
   * answer is no, so a script never hangs on a question.
   */
  async confirm(question: string, yes: boolean | undefined): Promise<void> {
    if (yes) return;
    if (!this.io.stdin.isTTY)
      throw new CliError(`${question} — not confirmed (no terminal: pass --yes)`, EXIT.declined);
    const rl = createInterface({
      input: this.io.stdin,
      output: this.io.stderr as NodeJS.WritableStream,
    });
    const answer = await new Promise<string>((resolve) =>
      rl.question(`${question} [y/N] `, resolve),
    );
    rl.close();
    if (!/^y(es)?$/i.test(answer.trim())) throw new CliError('not confirmed', EXIT.declined);
  }

  /** Everything on stdin (a token or an agent key piped in, never an argument). */
  async readStdin(what: string): Promise<string> {
    let text = '';
    if (this.io.stdin.isTTY) text = await this.readHidden(what);
    else for await (const chunk of this.io.stdin) text += chunk.toString();
    const value = text.trim();
    if (!value) throw CliError.usage(`no ${what} on standard input`);
    return value;
  }

  /** One line from the terminal without echo (a secret must not stay on the screen). */
  private readHidden(what: string): Promise<string> {
    const stdin = this.io.stdin as NodeJS.ReadStream;
    this.io.stderr.write(`${what} (not shown): `);
    return new Promise((resolve, reject) => {
      let line = '';
      const done = (error?: Error) => {
        stdin.setRawMode(false);
        stdin.pause();
        stdin.off('data', onData);
        this.io.stderr.write('\n');
        if (error) reject(error);
        else resolve(line);
      };
      const onData = (chunk: Buffer) => {
        for (const char of chunk.toString('utf8')) {
          if (char === '\r' || char === '\n' || char === '\u0004') return done();
          if (char === '\u0003') return done(new CliError('interrupted', EXIT.declined));
          if (char === '\u007f' || char === '\b') line = line.slice(0, -1);
          else line += char;
        }
      };
      stdin.setRawMode(true);
      stdin.resume();
      stdin.on('data', onData);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.transports.map((t) => t.close()));
  }
}
