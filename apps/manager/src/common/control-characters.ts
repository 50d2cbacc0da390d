import type { RequestHandler } from 'express';
import { DomainError } from './domain-error';
import { ErrorCode } from './error-code';

/** C0 controls and DEL, none of which belongs in a path or a query. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const IN_URL = /[\u0000-\u001f\u007f]/;
/** The same less tab, line feed and carriage return, which text fields (descriptions, PEM) hold. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const IN_TEXT = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/** A UTF-16 surrogate without its pair: no Unicode text, and it breaks encoders downstream. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Refuses control characters where they make no sense, before anything reads the request: in the
 * decoded path and query string, and in any string (or object key) of a JSON body, as well as
 * unpaired UTF-16 surrogates (no Unicode text; they break encoders downstream). A NUL byte
 * never reaches PostgreSQL (which refuses it as an encoding error) and no name, id or filter holds
 * an escape sequence. Answers 400 validation_failed naming where the character was.
 */
export function controlCharacterMiddleware(): RequestHandler {
  return (req, _res, next) => {
    const url = req.originalUrl ?? req.url;
    const at = url.indexOf('?');
    const path = safeDecode(at < 0 ? url : url.slice(0, at));
    if (path === undefined || IN_URL.test(path)) return next(refused('path'));
    const query = at < 0 ? '' : safeDecode(url.slice(at + 1));
    if (query === undefined || IN_URL.test(query)) return next(refused('query'));
    const where = findInBody(req.body as unknown, '(body)', 0);
    return next(where === undefined ? undefined : refused(where));
  };
}

function refused(where: string): DomainError {
  return new DomainError(
    ErrorCode.ValidationFailed,
    `${where}: a control character or an unpaired surrogate is not allowed here`,
  );
}

/** decodeURIComponent that answers undefined for malformed escapes (`%E0%A4%A`). */
function safeDecode(value: string): string | undefined {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

/** The path of the first string or key holding a control character, if any. */
function findInBody(value: unknown, path: string, depth: number): string | undefined {
  if (typeof value === 'string')
    return IN_TEXT.test(value) || LONE_SURROGATE.test(value) ? path : undefined;
  if (value === null || typeof value !== 'object' || depth > 64) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i += 1) {
      const found = findInBody(value[i], `${path}.${i}`, depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    const name = path === '(body)' ? key : `${path}.${key}`;
    if (IN_URL.test(key) || LONE_SURROGATE.test(key)) return '(a field name)';
    const found = findInBody(item, name, depth + 1);
    if (found) return found;
  }
  return undefined;
}
