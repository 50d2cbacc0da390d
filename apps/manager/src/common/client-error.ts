import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { ErrorCode } from './error-code';
import { ERROR_STATUS, type ErrorBody } from './error-status';
import { newTraceId } from './trace-id';

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  431: 'Request Header Fields Too Large',
};

/**
 * Requests Node's HTTP parser refuses before any middleware runs — a request line or headers over
 * its limit, bytes that are not HTTP — are answered with the one error shape too, not Node's bare
 * status line: 431 `headers_too_large` or 400 `bad_request`, with a fresh trace id, then closed.
 */
export function answerClientErrorsAsJson(server: Server): void {
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const code =
      error.code === 'HPE_HEADER_OVERFLOW' ? ErrorCode.HeadersTooLarge : ErrorCode.BadRequest;
    const status = ERROR_STATUS[code];
    const body: ErrorBody = {
      error: {
        code,
        message:
          code === ErrorCode.HeadersTooLarge
            ? 'the request line and headers are larger than 16 KB'
            : 'the request is not valid HTTP',
        traceId: newTraceId(),
      },
    };
    const text = JSON.stringify(body);
    socket.end(
      `HTTP/1.1 ${status} ${REASONS[status]}\r\n` +
        'content-type: application/json; charset=utf-8\r\n' +
        `content-length: ${Buffer.byteLength(text)}\r\n` +
        'connection: close\r\n\r\n' +
        text,
    );
  });
}
