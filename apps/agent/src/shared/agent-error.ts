/**
 * Domain error codes. rpc/error-status.ts maps every code to a gRPC status; a code added here
 * without a mapping there breaks the build.
 */
export enum ErrorCode {
  InvalidArgument = 'INVALID_ARGUMENT',
  Unauthenticated = 'UNAUTHENTICATED',
  PermissionDenied = 'PERMISSION_DENIED',
  NotFound = 'NOT_FOUND',
  AlreadyExists = 'ALREADY_EXISTS',
  /** The VM (or other resource) is busy or in a state that does not allow the operation. */
  FailedPrecondition = 'FAILED_PRECONDITION',
  /** A node, a peer agent or etcd could not be reached. */
  Unavailable = 'UNAVAILABLE',
  DeadlineExceeded = 'DEADLINE_EXCEEDED',
  Unimplemented = 'UNIMPLEMENTED',
  Internal = 'INTERNAL',
}

/** An error whose message is safe to show to the caller (no paths, no stack, no secrets). */
export class AgentError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AgentError';
  }
}
