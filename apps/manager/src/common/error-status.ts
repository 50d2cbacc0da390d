import { ErrorCode } from './error-code';

/** The HTTP status of each error code. Exhaustive on purpose: an unmapped code breaks the build. */
export const ERROR_STATUS: Readonly<Record<ErrorCode, number>> = {
  [ErrorCode.ValidationFailed]: 400,
  [ErrorCode.MalformedJson]: 400,
  [ErrorCode.BadRequest]: 400,
  [ErrorCode.Unauthenticated]: 401,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.MethodNotAllowed]: 405,
  [ErrorCode.Conflict]: 409,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.UnsupportedMediaType]: 415,
  [ErrorCode.HeadersTooLarge]: 431,
  [ErrorCode.RemoteUnreachable]: 422,
  [ErrorCode.RemoteTlsFailed]: 422,
  [ErrorCode.RemoteFingerprintMismatch]: 422,
  [ErrorCode.RemoteCredentialRejected]: 422,
  [ErrorCode.RemoteError]: 422,
  [ErrorCode.CertificateOrderFailed]: 422,
  [ErrorCode.RateLimited]: 429,
  [ErrorCode.Internal]: 500,
  [ErrorCode.NotReady]: 503,
  [ErrorCode.RealmUnavailable]: 503,
  [ErrorCode.AuditUnavailable]: 503,
};

/** The code for a status that did not come with one (framework errors such as an unknown route). */
export function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return ErrorCode.BadRequest;
    case 401:
      return ErrorCode.Unauthenticated;
    case 403:
      return ErrorCode.Forbidden;
    case 404:
      return ErrorCode.NotFound;
    case 405:
      return ErrorCode.MethodNotAllowed;
    case 409:
      return ErrorCode.Conflict;
    case 413:
      return ErrorCode.PayloadTooLarge;
    case 415:
      return ErrorCode.UnsupportedMediaType;
    case 429:
      return ErrorCode.RateLimited;
    case 503:
      return ErrorCode.NotReady;
    default:
      return ErrorCode.Internal;
  }
}

/** The one error shape every failure is answered with: `{"error": {code, message, traceId}}`. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; traceId: string };
}
