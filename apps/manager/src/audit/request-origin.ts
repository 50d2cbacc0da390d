import type { Request } from 'express';
import { traceIdOf } from '../common/trace-id';

/** Where an HTTP request came from, as the audit log records it. */
export interface RequestOrigin {
  readonly traceId: string | null;
  /** The client's address (the TCP peer; IPv4-mapped IPv6 addresses in IPv4 form). */
  readonly source: string | null;
  readonly method: string;
  /** The path without the query string. */
  readonly path: string;
}

export function requestOrigin(request: Request): RequestOrigin {
  const address = request.socket?.remoteAddress ?? null;
  const traceId = traceIdOf(request);
  return {
    traceId: traceId === 'unknown' ? null : traceId,
    source: address?.startsWith('::ffff:') ? address.slice(7) : address,
    method: request.method,
    path: request.path,
  };
}
