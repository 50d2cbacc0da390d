/**
 * The exit codes of `debvisor`, documented in docs/cli.md: a script may rely on them.
 * An answer of the manager maps to one by its HTTP status (see exitCodeForStatus).
 */
export const EXIT = {
  /** Done. */
  ok: 0,
  /** Anything else: the manager failed (5xx) or answered what the CLI did not expect. */
  failed: 1,
  /** Bad arguments, a bad or unsafe config file, or a request the manager refused as invalid (400, 422). */
  usage: 2,
  /** No token, or the manager did not accept it (401). */
  unauthenticated: 3,
  /** The token lacks the privilege (403). */
  forbidden: 4,
  /** No such remote, VM, task, user … (404). */
  notFound: 5,
  /** The object is busy or in the wrong state (409), or the manager asks to slow down (429). */
  conflict: 6,
  /** The manager cannot be reached: connection refused, timeout, DNS, or TLS trust (pinned CA) failed. */
  unreachable: 7,
  /** A task the CLI followed ended failed or cancelled, or a connection test / pre-flight failed. */
  taskFailed: 8,
  /** audit verify: the hash chain is broken. */
  chainBroken: 9,
  /** The user declined a confirmation (or none could be asked: no terminal and no --yes). */
  declined: 10,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit code for a failed answer of the manager. */
export function exitCodeForStatus(status: number): ExitCode {
  if (status === 400 || status === 422) return EXIT.usage;
  if (status === 401) return EXIT.unauthenticated;
  if (status === 403) return EXIT.forbidden;
  if (status === 404) return EXIT.notFound;
  if (status === 409 || status === 429) return EXIT.conflict;
  return EXIT.failed;
}
