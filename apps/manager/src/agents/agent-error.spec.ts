import { status as GrpcStatus, Metadata, type ServiceError } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../common/error-code';
import { readableDetails, translateGrpcError } from './agent-error';

function grpcError(code: GrpcStatus, details: string): ServiceError {
  return Object.assign(new Error(`${code} ${details}`), {
    code,
    details,
    metadata: new Metadata(),
  });
}

describe('agent errors', () => {
  it("drops grpc-js's load-balancer wrapping and an empty resolution note", () => {
    expect(
      readableDetails(
        'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:9443. Resolution note: ',
      ),
    ).toBe('connect ECONNREFUSED 127.0.0.1:9443');
    expect(
      readableDetails(
        'No connection established. Last error: getaddrinfo ENOTFOUND x. Resolution note: DNS failed',
      ),
    ).toBe('getaddrinfo ENOTFOUND x (DNS failed)');
    expect(readableDetails('  deadline\n exceeded ')).toBe('deadline exceeded');
    expect(readableDetails('x'.repeat(400))).toHaveLength(300);
  });

  it('says an agent is unreachable with the cause only', () => {
    const error = translateGrpcError(
      grpcError(
        GrpcStatus.UNAVAILABLE,
        'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ',
      ),
      'a:1',
      5000,
    );
    expect(error.code).toBe(ErrorCode.RemoteUnreachable);
    expect(error.message).toBe('a:1 is unreachable: connect ECONNREFUSED 127.0.0.1:1');
  });
});
