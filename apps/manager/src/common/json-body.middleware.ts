import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import { DomainError } from './domain-error';
import { ErrorCode } from './error-code';

export const MAX_BODY_BYTES = 1024 * 1024;

/**
 * JSON bodies up to 1 MB. Parser failures become domain errors (413 too large, 400 malformed JSON,
 * 415 unsupported encoding), which the Nest error handler turns into the usual JSON error answer.
 */
export function jsonBodyMiddleware(): [RequestHandler, ErrorRequestHandler] {
  const parse = express.json({ limit: MAX_BODY_BYTES, strict: true });
  const translate: ErrorRequestHandler = (
    error: { type?: string; status?: number } | undefined,
    _req,
    _res,
    next,
  ) => {
    switch (error?.type) {
      case 'entity.too.large':
        return next(
          new DomainError(
            ErrorCode.PayloadTooLarge,
            `the request body is larger than ${MAX_BODY_BYTES} bytes (1 MB)`,
          ),
        );
      case 'entity.parse.failed':
        return next(new DomainError(ErrorCode.MalformedJson, 'the request body is not valid JSON'));
      case 'encoding.unsupported':
      case 'charset.unsupported':
        return next(
          new DomainError(ErrorCode.UnsupportedMediaType, 'unsupported body encoding or charset'),
        );
      case 'request.aborted':
      case 'request.size.invalid':
      case 'stream.encoding.set':
        return next(new DomainError(ErrorCode.BadRequest, 'the request body could not be read'));
      default:
        return next(error);
    }
  };
  return [parse, translate];
}
