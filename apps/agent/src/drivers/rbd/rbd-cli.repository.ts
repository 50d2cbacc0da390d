import { execFile } from 'node:child_process';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import { hasControlCharacters } from '../../shared/text';

export interface RbdCliOptions {
  /** The Ceph cluster name (--cluster). */
  cluster: string;
  /** ceph.conf (-c); unset: Ceph's default for the cluster name. */
  conf?: string;
  /** The client's keyring (--keyring); unset: Ceph's default search. */
  keyring?: string;
  /** The cephx user: client.<clientId> (--id). */
  clientId: string;
  rbdBinary: string;
  cephBinary: string;
  radosBinary: string;
  /** How long a call on this cluster may take before it is killed. */
  timeoutMs: number;
  /** How long a call that reaches a peer cluster may take (mirroring). */
  peerTimeoutMs: number;
}

export type CephTool = 'rbd' | 'ceph' | 'rados';

export interface RunOptions {
  /** 'peer' for calls that reach the peer cluster: the shorter peerTimeoutMs. */
  reach?: 'local' | 'peer';
  /** A deadline of its own (ms), instead of the one `reach` picks. */
  timeoutMs?: number;
  /** Written to the tool's standard input (e.g. a secret that must not appear in argv). */
  input?: string;
}

const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/** The tools see a fixed environment: C locale and UTC (timestamps are parsed), the system PATH, no CEPH_ARGS. */
const CEPH_ENV: NodeJS.ProcessEnv = Object.freeze({
  LC_ALL: 'C',
  LANG: 'C',
  TZ: 'UTC',
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
});

const PACKAGE = 'ceph-common';

/**
 * Every call to Ceph, through its command-line tools (rbd, ceph, rados): execFile with an argument
 * array (never a shell), the cluster, user and keyring from the configuration, `--format json` where
 * the caller asks for JSON, a timeout on every call (SIGKILL), and the tools' errors turned into
 * AgentErrors by errno. Messages are short and safe: the tool's own stderr (which can name paths
 * and addresses) is never passed on.
 */
export class RbdCliRepository {
  constructor(private readonly options: RbdCliOptions) {}

  get clusterName(): string {
    return this.options.cluster;
  }

  /** `rbd <args>` (the RbdRunner that mirroring uses). */
  rbd(args: readonly string[], options: RunOptions = {}): Promise<string> {
    return this.run('rbd', args, options);
  }

  /**
   * Runs a tool and answers its standard output. A failure is an AgentError with a code from the
   * errno and a `cause` whose message is "(<errno>) <strerror>" as the tool printed it.
   */
  run(tool: CephTool, args: readonly string[], options: RunOptions = {}): Promise<string> {
    const timeoutMs =
      options.timeoutMs ??
      (options.reach === 'peer' ? this.options.peerTimeoutMs : this.options.timeoutMs);
    const binary = this.binary(tool);
    const what = describe(tool, args);
    return new Promise((resolve, reject) => {
      const argv = this.argv(args); // a refusal here rejects the promise
      const child = execFile(
        binary,
        argv,
        {
          timeout: timeoutMs,
          killSignal: 'SIGKILL',
          maxBuffer: MAX_OUTPUT_BYTES,
          env: CEPH_ENV,
          encoding: 'utf8',
        },
        (error, stdout, stderr) => {
          if (!error) return resolve(stdout);
          const failure = error as NodeJS.ErrnoException & {
            killed?: boolean;
            signal?: string | null;
          };
          if (failure.code === 'ENOENT') {
            return reject(
              new AgentError(
                ErrorCode.Unavailable,
                `${tool} (${binary}) is not installed: install the Debian package ${PACKAGE}`,
              ),
            );
          }
          if (failure.killed || failure.signal === 'SIGKILL') {
            return reject(
              new AgentError(
                ErrorCode.DeadlineExceeded,
                `the Ceph cluster ${this.options.cluster} did not answer ${what} within ${formatSeconds(timeoutMs)}`,
              ),
            );
          }
          reject(cephError(this.options.cluster, what, stderr));
        },
      );
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(options.input ?? '');
    });
  }

  /** Runs a tool with `--format json` and parses its answer (an empty answer is undefined). */
  async json(tool: CephTool, args: readonly string[], options: RunOptions = {}): Promise<unknown> {
    const stdout = await this.run(tool, [...withFormat(args)], options);
    const text = stdout.trim();
    if (!text) return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new AgentError(
        ErrorCode.Internal,
        `${describe(tool, args)} answered something that is not JSON`,
      );
    }
  }

  private binary(tool: CephTool): string {
    switch (tool) {
      case 'rbd':
        return this.options.rbdBinary;
      case 'ceph':
        return this.options.cephBinary;
      case 'rados':
        return this.options.radosBinary;
    }
  }

  private argv(args: readonly string[]): string[] {
    // Operands after `--` are ours (validated names); check anyway that none can be read as an
    // option or carry a line break into the tool.
    for (const arg of args) {
      if (hasControlCharacters(arg))
        throw new AgentError(
          ErrorCode.InvalidArgument,
          'refusing a Ceph argument that holds control characters',
        );
    }
    const end = args.indexOf('--');
    for (const operand of end < 0 ? [] : args.slice(end + 1)) {
      if (operand === '' || operand.startsWith('-')) {
        throw new AgentError(
          ErrorCode.InvalidArgument,
          'refusing a Ceph operand that is empty or starts with "-"',
        );
      }
    }
    const { cluster, conf, keyring, clientId } = this.options;
    return [
      '--cluster',
      cluster,
      ...(conf ? ['-c', conf] : []),
      '--id',
      clientId,
      ...(keyring ? ['--keyring', keyring] : []),
      ...args,
    ];
  }
}

/** `--format json` goes before `--` (the tools take options only before it). */
function withFormat(args: readonly string[]): string[] {
  const end = args.indexOf('--');
  return end < 0
    ? [...args, '--format', 'json']
    : [...args.slice(0, end), '--format', 'json', ...args.slice(end)];
}

/** `rbd snap create`, `ceph osd blocklist add`: the tool and its (sub)command words, never an operand. */
function describe(tool: CephTool, args: readonly string[]): string {
  const words: string[] = [];
  for (const arg of args) {
    if (arg === '--' || arg.startsWith('-') || !/^[a-z][a-z-]*$/.test(arg) || words.length === 3)
      break;
    words.push(arg);
  }
  return [tool, ...words].join(' ');
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/**
 * The tools report failures as `rbd: <what>: (<errno>) <strerror>` (librados/librbd codes); the
 * code comes from the errno, the message from the strerror text, never the rest of stderr.
 */
export function cephError(cluster: string, what: string, stderr: string): AgentError {
  if (
    /couldn't connect to the cluster|error connecting to the cluster|RADOS timed out|handle_auth_bad_method|unable to find a keyring|monclient.*authenticate timed out/i.test(
      stderr,
    )
  ) {
    return new AgentError(
      ErrorCode.Unavailable,
      `${what}: cannot connect to the Ceph cluster ${cluster}`,
    );
  }
  // The last "(errno) text" is the one the tool reports; earlier ones are librbd's log lines.
  const matches = [...stderr.matchAll(/\((\d{1,3})\) ([A-Za-z][A-Za-z ,'-]{0,80})/g)];
  const last = matches.at(-1);
  const errno = last ? Number(last[1]) : undefined;
  const reason = last
    ? last[2]!.trim()
    : /lock is already held/.test(stderr)
      ? 'Device or resource busy'
      : 'failed';
  const code =
    errno !== undefined
      ? (ERRNO_CODES[errno] ?? ErrorCode.Internal)
      : /lock is already held/.test(stderr)
        ? ErrorCode.FailedPrecondition
        : ErrorCode.Internal;
  const text =
    errno === 1 || errno === 13 ? `the Ceph client lacks permission (${reason})` : reason;
  return new AgentError(code, `${what}: ${text}`, {
    cause: new Error(errno === undefined ? reason : `(${errno}) ${reason}`),
  });
}

const ERRNO_CODES: Readonly<Record<number, ErrorCode>> = {
  1: ErrorCode.FailedPrecondition, // EPERM: cephx caps
  2: ErrorCode.NotFound, // ENOENT
  5: ErrorCode.Unavailable, // EIO
  13: ErrorCode.FailedPrecondition, // EACCES: cephx caps
  16: ErrorCode.FailedPrecondition, // EBUSY: locked, watched, in use
  17: ErrorCode.AlreadyExists, // EEXIST
  22: ErrorCode.InvalidArgument, // EINVAL
  30: ErrorCode.FailedPrecondition, // EROFS: a non-primary (mirrored) image, or locked by another client
  39: ErrorCode.FailedPrecondition, // ENOTEMPTY: an image with snapshots
  95: ErrorCode.FailedPrecondition, // EOPNOTSUPP
  108: ErrorCode.Unavailable, // ESHUTDOWN: this client is blocklisted
  110: ErrorCode.Unavailable, // ETIMEDOUT
  111: ErrorCode.Unavailable, // ECONNREFUSED
  113: ErrorCode.Unavailable, // EHOSTUNREACH
};

/** The errno a failed Ceph call reported (from the AgentError's cause), undefined when none. */
export function errnoOf(error: unknown): number | undefined {
  if (!(error instanceof AgentError) || !(error.cause instanceof Error)) return undefined;
  const match = /^\((\d+)\)/.exec(error.cause.message);
  return match ? Number(match[1]) : undefined;
}
