import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';

/** Looks like the TLS handshake failed (their certificate, or they refused ours). */
const TLS_FAILURE =
  /certificate|altname|self[- ]signed|unable to (verify|get)|handshake|ssl|tls|alert|wrong version|DEPTH_ZERO|UNABLE_TO/i;
/** The peer closed the connection during the handshake: typically it does not trust our client CA. */
const DROPPED = /ECONNRESET|socket hang up|Connection dropped|closed before|EPIPE/i;

/** An agent call that failed, translated into the manager's error codes. */
export class AgentError extends DomainError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly endpoint: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'AgentError';
  }

  /** Worth trying the next endpoint: this agent could not be reached or not securely. */
  get triesNextEndpoint(): boolean {
    return this.code === ErrorCode.RemoteUnreachable || this.code === ErrorCode.RemoteTlsFailed;
  }
}

/**
 * gRPC's words without its load balancer's wrapping: "No connection established. Last error: X.
 * Resolution note: " (an empty note) becomes X. Whitespace folded, at most 300 characters.
 */
export function readableDetails(details: string): string {
  const folded = details.replace(/\s+/g, ' ').trim();
  const wrapped = /^No connection established\. Last error: (.*?)\.? Resolution note: ?(.*)$/.exec(
    folded,
  );
  const text = wrapped ? (wrapped[2] ? `${wrapped[1]} (${wrapped[2]})` : wrapped[1]) : folded;
  return text.slice(0, 300);
}

export function translateGrpcError(
  error: ServiceError,
  endpoint: string,
  timeoutMs: number,
): AgentError {
  const details = readableDetails(error.details || error.message || '');
  switch (error.code) {
    case GrpcStatus.UNAVAILABLE:
      if (TLS_FAILURE.test(details)) {
        return new AgentError(
          ErrorCode.RemoteTlsFailed,
          `TLS with ${endpoint} failed: ${details}`,
          endpoint,
          { cause: error },
        );
      }
      if (DROPPED.test(details)) {
        return new AgentError(
          ErrorCode.RemoteTlsFailed,
          `${endpoint} closed the connection during the TLS handshake (${details}); does the agent trust the manager's client CA (GET /api/v1/manager/identity) in its tls.clientCas?`,
          endpoint,
          { cause: error },
        );
      }
      return new AgentError(
        ErrorCode.RemoteUnreachable,
        `${endpoint} is unreachable: ${details}`,
        endpoint,
        { cause: error },
      );
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new AgentError(
        ErrorCode.RemoteUnreachable,
        `${endpoint} did not answer within ${timeoutMs} ms`,
        endpoint,
        { cause: error },
      );
    case GrpcStatus.UNAUTHENTICATED:
      return new AgentError(
        ErrorCode.RemoteCredentialRejected,
        `the agent at ${endpoint} did not accept the API key: ${details}`,
        endpoint,
        { cause: error },
      );
    case GrpcStatus.PERMISSION_DENIED:
      return new AgentError(
        ErrorCode.RemoteCredentialRejected,
        `the API key lacks a permission on ${endpoint}: ${details}`,
        endpoint,
        { cause: error },
      );
    case GrpcStatus.NOT_FOUND:
      return new AgentError(ErrorCode.NotFound, details || 'not found', endpoint, { cause: error });
    case GrpcStatus.FAILED_PRECONDITION:
    case GrpcStatus.ABORTED:
    case GrpcStatus.ALREADY_EXISTS:
      return new AgentError(ErrorCode.Conflict, details, endpoint, { cause: error });
    case GrpcStatus.INVALID_ARGUMENT:
      return new AgentError(ErrorCode.BadRequest, details, endpoint, { cause: error });
    default:
      return new AgentError(
        ErrorCode.RemoteError,
        `the agent at ${endpoint} answered ${GrpcStatus[error.code] ?? error.code}: ${details}`,
        endpoint,
        {
          cause: error,
        },
      );
  }
}

/** When every endpoint failed: one error naming each endpoint's problem. */
export function allEndpointsFailed(remoteId: string, failures: AgentError[]): AgentError {
  if (failures.length === 1) return failures[0];
  const code = failures.some((f) => f.code === ErrorCode.RemoteTlsFailed)
    ? ErrorCode.RemoteTlsFailed
    : ErrorCode.RemoteUnreachable;
  return new AgentError(
    code,
    `no agent of remote ${remoteId} answered: ${failures.map((f) => f.message).join('; ')}`,
    failures.map((f) => f.endpoint).join(','),
  );
}
