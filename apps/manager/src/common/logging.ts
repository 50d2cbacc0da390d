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
      // Background work (poller refreshes, tasks) logs its trace id too; a request's logger has it bound already.
      mixin: (_object, _level, self) => {
        const traceId = currentTraceId();
        return traceId && !('traceId' in self.bindings()) ? { traceId } : {};
      },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

const QUIET = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * The first middleware of every request: assigns the trace id (the caller's `traceparent` or
 * `x-trace-id` when sane, else a new one), echoes it as `x-trace-id`, gives the request a logger
 * bound to it, and logs the completed request (method, URL, status, time; never headers or bodies).
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
    autoLogging: { ignore: (req) => QUIET.has((req.url ?? '').split('?')[0]) },
    customLogLevel: (_req, res, error) =>
      error || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info',
    serializers: {
      req: (req: { method?: string; url?: string; remoteAddress?: string }) => ({
        method: req.method,
        url: req.url,
        remoteAddress: req.remoteAddress,
      }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
    },
  });
}
