import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import { hasControlCharacters } from '../../shared/text';

export interface VirshOptions {
  /** The virsh binary (a name looked up in PATH, or an absolute path). */
  virsh: string;
  /** The libvirt connection URI (-c). */
  uri: string;
  /** How long one call may take before it is killed. */
  timeoutMs: number;
}

/** How a background virsh ended. */
export interface VirshJobResult {
  /** Undefined when virsh exited 0. */
  error?: AgentError;
  stdout: string;
}

/** A virsh process that runs in the background (a migration, an event wait), watched until it exits. */
export interface VirshJob {
  readonly done: Promise<VirshJobResult>;
  readonly exited: boolean;
  /** SIGINT: virsh aborts the job it watches (as on Ctrl-C) and exits. */
  interrupt(): void;
}

const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

/**
 * Every call to libvirt, through the virsh client: execFile with an argument array (never a shell),
 * `-c <uri>`, `--` before operands, a timeout on every call, and the C locale so that libvirt's
 * messages can be told apart. virsh's errors become AgentErrors by what libvirt reported.
 */
export class VirshRepository {
  constructor(private readonly options: VirshOptions) {}

  /** Runs `virsh -q -c <uri> <args…>` and answers its standard output. */
  run(args: readonly string[], timeoutMs = this.options.timeoutMs): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        this.options.virsh,
        this.argv(args),
        { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT_BYTES, env: VIRSH_ENV },
        (error, stdout, stderr) => {
          if (!error) return resolve(stdout);
          const failure = error as NodeJS.ErrnoException & { killed?: boolean; signal?: string };
          if (failure.code === 'ENOENT') {
            return reject(
              new AgentError(
                ErrorCode.Unavailable,
                `virsh (${this.options.virsh}) is not installed: install the Debian package libvirt-clients`,
              ),
            );
          }
          if (failure.killed || failure.signal === 'SIGKILL') {
            return reject(
              new AgentError(
                ErrorCode.DeadlineExceeded,
                `libvirt did not answer virsh ${args[0]} within ${Math.round(timeoutMs / 1000)} s`,
              ),
            );
          }
          reject(virshError(args[0] ?? '', stderr));
        },
      );
    });
  }

  /** `virsh define` of a domain XML (through a private temp file that is removed afterwards). */
  async define(xml: string): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'debvisor-virsh-'));
    try {
      const file = join(dir, 'domain.xml');
      await writeFile(file, xml, { mode: 0o600 });
      await this.run(['define', '--validate', '--', file]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Starts virsh in the background. A migration lasts as long as it needs: it is bounded by
   * domjobabort, interrupt() and the driver's close(), not by the call timeout.
   */
  background(args: readonly string[]): VirshJob {
    const child = spawn(this.options.virsh, this.argv(args), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: VIRSH_ENV,
    });
    let stdout = '';
    let stderr = '';
    let exited = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      if (stdout.length < MAX_OUTPUT_BYTES) stdout += chunk.toString('utf8');
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_OUTPUT_BYTES) stderr += chunk.toString('utf8');
    });
    const done = new Promise<VirshJobResult>((resolve) => {
      child.once('error', (error: NodeJS.ErrnoException) => {
        exited = true;
        const message =
          error.code === 'ENOENT'
            ? `virsh (${this.options.virsh}) is not installed: install the Debian package libvirt-clients`
            : `virsh ${args[0]} could not run: ${error.message}`;
        resolve({
          error: new AgentError(
            error.code === 'ENOENT' ? ErrorCode.Unavailable : ErrorCode.Internal,
            message,
          ),
          stdout,
        });
      });
      child.once('close', (code, signal) => {
        exited = true;
        resolve(
          code === 0
            ? { stdout }
            : {
                error: virshError(
                  args[0] ?? '',
                  stderr || `virsh ended by ${signal ?? `exit code ${code}`}`,
                ),
                stdout,
              },
        );
      });
    });
    return {
      done,
      get exited() {
        return exited;
      },
      interrupt: () => {
        if (!exited) child.kill('SIGINT');
      },
    };
  }

  private argv(args: readonly string[]): string[] {
    // Operands after `--` are ours (validated UUIDs, file names, URIs); check anyway that nothing can
    // be read as an option or carry a line break into libvirt.
    const end = args.indexOf('--');
    for (const operand of end < 0 ? [] : args.slice(end + 1)) {
      if (operand === '' || operand.startsWith('-') || hasControlCharacters(operand)) {
        throw new AgentError(
          ErrorCode.InvalidArgument,
          'refusing a virsh operand that is empty, starts with "-" or holds control characters',
        );
      }
    }
    return ['-q', '-c', this.options.uri, ...args];
  }
}

/**
 * virsh runs with a fixed environment: the C locale (its messages are parsed) and the system PATH,
 * and nothing of the agent's own environment.
 */
const VIRSH_ENV: NodeJS.ProcessEnv = Object.freeze({
  LC_ALL: 'C',
  LANG: 'C',
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
});

/**
 * virsh's stderr as an AgentError: the code from libvirt's error text, the message its lines
 * without the `error: ` prefixes (virsh's own "failed to …" line first, libvirt's reason after).
 */
export function virshError(command: string, stderr: string): AgentError {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/^error:\s*/, '').trim())
    .filter((l) => l && !/ from \/\S*debvisor-virsh-/.test(l));
  const message = lines.join(': ') || `virsh ${command} failed`;
  return new AgentError(
    codeOf(message),
    message.length > 2000 ? `${message.slice(0, 2000)}…` : message,
  );
}

const CODES: ReadonlyArray<[RegExp, ErrorCode]> = [
  [/Domain not found|no domain with matching|failed to get domain/i, ErrorCode.NotFound],
  [/already exists|is already defined/i, ErrorCode.AlreadyExists],
  [
    /Failed to connect socket|failed to connect to the hypervisor|End of file while reading data|Cannot recv data|Connection refused|unable to connect to server/i,
    ErrorCode.Unavailable,
  ],
  [/Timed out during operation|cannot acquire state change lock/i, ErrorCode.DeadlineExceeded],
  [
    /Requested operation is not valid|is not running|is already active|not active|operation aborted|no job is active|Operation not supported/i,
    ErrorCode.FailedPrecondition,
  ],
  [
    /XML error|XML document failed to validate|unsupported configuration|invalid argument|Unable to parse/i,
    ErrorCode.InvalidArgument,
  ],
];

function codeOf(message: string): ErrorCode {
  return CODES.find(([pattern]) => pattern.test(message))?.[1] ?? ErrorCode.Internal;
}
