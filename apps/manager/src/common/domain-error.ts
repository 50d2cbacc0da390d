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

/**
 * A refusal for a missing privilege, wherever it is decided (the guard or a service). The error
 * filter records every one of them (audit entry and authz_denials_total) in one place.
 */
export class PermissionDenied extends DomainError {
  constructor(
    /** What was needed: a privilege on an ACL path template, filled from `params`; none for a route that declares nothing. */
    readonly requirement: { privilege: string; path: string } | undefined,
    readonly params: Record<string, string | undefined>,
    message: string,
    /**
     * Answer 404 "<what> not found" instead of 403, for objects whose existence the caller may not
     * learn (another tenant's VM). Still recorded as a denial.
     */
    hideAs?: string,
  ) {
    super(
      hideAs ? ErrorCode.NotFound : ErrorCode.Forbidden,
      hideAs ? `${hideAs} not found` : message,
    );
    this.name = 'PermissionDenied';
  }
}
