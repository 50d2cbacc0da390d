import { EXIT, exitCodeForStatus, type ExitCode } from './exit-codes';

/**
 * A failure the CLI reports in one line (plus the manager's trace id) and exits with its code;
 * never a stack trace.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    /** The manager's error code (the JSON error shape), when the manager answered. */
    readonly code?: string,
    /** The manager's trace id, to find the request in its logs and audit log. */
    readonly traceId?: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'CliError';
  }

  /** From a failed answer of the manager: `{"error": {code, message, traceId}}`. */
  static fromAnswer(status: number, body: unknown): CliError {
    const error = (body as { error?: { code?: unknown; message?: unknown; traceId?: unknown } })
      ?.error;
    const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
    return new CliError(
      text(error?.message) ?? `the manager answered HTTP ${status}`,
      exitCodeForStatus(status),
      text(error?.code),
      text(error?.traceId),
      status,
    );
  }

  static usage(message: string): CliError {
    return new CliError(message, EXIT.usage);
  }
}
