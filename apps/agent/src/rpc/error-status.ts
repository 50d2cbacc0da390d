import { status } from '@grpc/grpc-js';
import { ErrorCode } from '../shared/agent-error';

/** Every domain error code → its gRPC status. A Record, so a code without a mapping does not compile. */
export const ERROR_STATUS: Readonly<Record<ErrorCode, status>> = {
  [ErrorCode.InvalidArgument]: status.INVALID_ARGUMENT,
  [ErrorCode.Unauthenticated]: status.UNAUTHENTICATED,
  [ErrorCode.PermissionDenied]: status.PERMISSION_DENIED,
  [ErrorCode.NotFound]: status.NOT_FOUND,
  [ErrorCode.AlreadyExists]: status.ALREADY_EXISTS,
  [ErrorCode.FailedPrecondition]: status.FAILED_PRECONDITION,
  [ErrorCode.Unavailable]: status.UNAVAILABLE,
  [ErrorCode.DeadlineExceeded]: status.DEADLINE_EXCEEDED,
  [ErrorCode.Unimplemented]: status.UNIMPLEMENTED,
  [ErrorCode.Internal]: status.INTERNAL,
};

/** The domain code for a status a peer agent answered (so a forwarded error keeps its status). */
export function errorCodeOf(code: status): ErrorCode {
  for (const [errorCode, mapped] of Object.entries(ERROR_STATUS) as [ErrorCode, status][]) {
    if (mapped === code && errorCode !== ErrorCode.Internal) return errorCode;
  }
  return ErrorCode.Unavailable;
}
