import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import { DomainError } from './domain-error';
import { ErrorCode } from './error-code';

export const MAX_BODY_BYTES = 1024 * 1024;
/** No request body of the API nests deeper; deeper ones are refused before they are parsed. */
export const MAX_BODY_DEPTH = 32;

/**
 * JSON bodies up to 1 MB and 32 levels of nesting. Parser failures become domain errors (413 too
 * large, 400 malformed JSON or too deep, 415 unsupported encoding), which the Nest error handler
 * turns into the usual JSON error answer.
 */
export function jsonBodyMiddleware(): [RequestHandler, ErrorRequestHandler] {
  const parse = express.json({
    limit: MAX_BODY_BYTES,
    strict: true,
    verify: (_req, _res, buffer) => {
      if (nestingDepth(buffer) > MAX_BODY_DEPTH) throw new Error('too deep');
    },
  });
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
      case 'entity.verify.failed':
        return next(
          new DomainError(
            ErrorCode.MalformedJson,
            `the request body nests deeper than ${MAX_BODY_DEPTH} levels`,
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

/** The deepest nesting of objects and arrays in a JSON text, brackets inside strings not counted. */
export function nestingDepth(buffer: Buffer): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < buffer.length; i += 1) {
    const byte = buffer[i];
    if (inString) {
      if (byte === 0x5c)
        i += 1; // backslash: skip the escaped character
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) inString = true;
    else if (byte === 0x7b || byte === 0x5b) deepest = Math.max(deepest, ++depth);
    else if (byte === 0x7d || byte === 0x5d) depth -= 1;
  }
  return deepest;
}
