import type { IncomingMessage, ServerResponse } from 'node:http';
import pino, { type DestinationStream, type Logger } from 'pino';
import { pinoHttp, type HttpLogger } from 'pino-http';
import type { LogLevel } from '../config/manager-config';
import { currentTraceId } from './trace-context';
import { incomingTraceId, newTraceId } from './trace-id';

/** Never logged, wherever they appear in a logged object. */
const REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  '*.authorization',
  '*.apiKey',
  '*.key',
  '*.password',
  '*.secret',
  '*.token',
  'credentials[*].key',
  '*.credentials[*].key',
];

/** The manager's JSON log (one object per line) on `destination` (standard output by default). */
export function createRootLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'debvisor-manager', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT, censor: '[redacted]' },
      serializers: { err: safeErrorSerializer, error: safeErrorSerializer },
      // Background work (poller refreshes, tasks) logs its trace id too; a request's logger has it bound already.
      mixin: (_object, _level, self) => {
        const traceId = currentTraceId();
        return traceId && !('traceId' in self.bindings()) ? { traceId } : {};
      },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/**
 * Errors as pino serialises them, less what a failed query carries along: TypeORM's
 * QueryFailedError (and the driver's error inside it) hold the statement's `parameters` — user
 * names, password hashes, token digests. The SQL text and the database's message stay.
 */
export function safeErrorSerializer(error: unknown): unknown {
  // pino-http hands its serializers an error already serialised; the root logger, the Error itself.
  return withoutParameters(error instanceof Error ? pino.stdSerializers.err(error) : error, 0);
}

function withoutParameters(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object' || depth > 5) return value;
  if (Array.isArray(value)) return value.map((item) => withoutParameters(item, depth + 1));
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => key !== 'parameters')
      .map(([key, item]) => [key, withoutParameters(item, depth + 1)]),
  );
}

/** The path of a request URL: query strings carry OIDC codes and states, filters, names. */
export function pathOf(url: string | undefined): string {
  return (url ?? '').split('?')[0];
}

const QUIET = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * The first middleware of every request: assigns the trace id (the caller's `traceparent` or
 * `x-trace-id` when sane, else a new one), echoes it as `x-trace-id`, gives the request a logger
 * bound to it, and logs the completed request (method, path, status, time; never the query string,
 * headers or bodies).
 */
export function createHttpLogger(logger: Logger): HttpLogger {
  return pinoHttp({
    logger,
    quietReqLogger: true,
    customAttributeKeys: { reqId: 'traceId' },
    genReqId: (req: IncomingMessage, res: ServerResponse) => {
      const id = incomingTraceId(req.headers) ?? newTraceId();
      res.setHeader('x-trace-id', id);
      return id;
    },
    autoLogging: { ignore: (req) => QUIET.has(pathOf(req.url)) },
    customLogLevel: (_req, res, error) =>
      error || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info',
    serializers: {
      req: (req: { method?: string; url?: string; remoteAddress?: string }) => ({
        method: req.method,
        url: pathOf(req.url),
        remoteAddress: req.remoteAddress,
      }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
      err: safeErrorSerializer,
    },
  });
}
