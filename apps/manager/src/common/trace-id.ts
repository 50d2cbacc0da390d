import { isTraceId } from '@debvisor/common';
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

/** W3C trace context: version-traceid-parentid-flags; an all-zero trace id is invalid. */
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

export function newTraceId(): string {
  return randomBytes(16).toString('hex');
}

/** The caller's trace id when it sent a sane one (traceparent first, then x-trace-id), else undefined. */
export function incomingTraceId(headers: IncomingHttpHeaders): string | undefined {
  const traceparent = single(headers['traceparent'])?.trim().toLowerCase();
  const match = traceparent ? TRACEPARENT.exec(traceparent) : null;
  if (match && !/^0+$/.test(match[1])) return match[1];
  const plain = single(headers['x-trace-id'])?.trim();
  // Short, printable, no spaces or separators of log formats; the same rule agents apply to x-debvisor-trace-id.
  if (isTraceId(plain)) return plain;
  return undefined;
}

/** The trace id assigned to a request by the logging middleware (pino-http keeps it as req.id). */
export function traceIdOf(req: IncomingMessage): string {
  const id = (req as IncomingMessage & { id?: unknown }).id;
  return typeof id === 'string' ? id : 'unknown';
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
