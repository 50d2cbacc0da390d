import { ErrorCode } from './error-code';

/**
 * An error the manager answers to its caller as it is: the code picks the HTTP status, the message
 * is shown to the user and therefore never holds secrets or internals.
 */
export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DomainError';
  }

  static notFound(what: string): DomainError {
    return new DomainError(ErrorCode.NotFound, `${what} not found`);
  }
}
