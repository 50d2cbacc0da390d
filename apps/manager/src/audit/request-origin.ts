import type { Request } from 'express';
import { traceIdOf } from '../common/trace-id';

/** Where an HTTP request came from, as the audit log records it. */
export interface RequestOrigin {
  readonly traceId: string | null;
  /**
   * The client's address: the TCP peer, or the address a trusted proxy (DEBVISOR_TRUSTED_PROXIES)
   * forwarded; IPv4-mapped IPv6 addresses in IPv4 form.
   */
  readonly source: string | null;
  readonly method: string;
  /** The path without the query string. */
  readonly path: string;
}

export function requestOrigin(request: Request): RequestOrigin {
  // Express's request.ip honours X-Forwarded-For only from the proxies the `trust proxy` setting lists.
  const address = request.ip ?? request.socket?.remoteAddress ?? null;
  const traceId = traceIdOf(request);
  return {
    traceId: traceId === 'unknown' ? null : traceId,
    source: address?.startsWith('::ffff:') ? address.slice(7) : address,
    method: request.method,
    path: request.path,
  };
}
