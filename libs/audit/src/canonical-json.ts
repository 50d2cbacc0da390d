/** A UTF-16 surrogate without its partner: not representable in UTF-8, so not in stored JSON either. */
export const LONE_SURROGATE =
  /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Canonical JSON as in RFC 8785 (JSON Canonicalization Scheme) for the values an audit entry can
 * hold: object keys sorted by their UTF-16 code units, no whitespace, strings and numbers written
 * exactly as ECMAScript's JSON.stringify writes them (which is what RFC 8785 prescribes).
 *
 * Two equal values always give the same text, so a SHA-256 over it is a stable fingerprint: after
 * a round trip through PostgreSQL's jsonb (which reorders keys) or a JSON-lines file.
 *
 * Object members whose value is `undefined` are left out (as JSON.stringify does); everything that
 * JSON cannot represent — `undefined` elsewhere, functions, symbols, bigints, NaN and ±Infinity,
 * lone surrogates — is refused with a TypeError instead of being silently changed.
 */
export function canonicalJson(value: unknown): string {
  return write(value, '');
}

function write(value: unknown, path: string): string {
  switch (typeof value) {
    case 'string':
      if (LONE_SURROGATE.test(value))
        throw new TypeError(`canonical JSON: ${where(path)} holds a lone surrogate`);
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value))
        throw new TypeError(
          `canonical JSON: ${where(path)} is ${value}, which JSON cannot represent`,
        );
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value))
        return `[${value.map((item, i) => write(item, `${path}[${i}]`)).join(',')}]`;
      const prototype = Object.getPrototypeOf(value) as unknown;
      if (prototype !== Object.prototype && prototype !== null) {
        throw new TypeError(
          `canonical JSON: ${where(path)} is a ${(value as object).constructor?.name ?? 'non-plain object'}, not a plain object`,
        );
      }
      const members: string[] = [];
      // Array.prototype.sort compares strings by UTF-16 code units, the order RFC 8785 asks for.
      for (const key of Object.keys(value).sort()) {
        const member = (value as Record<string, unknown>)[key];
        if (member === undefined) continue;
        if (LONE_SURROGATE.test(key))
          throw new TypeError(`canonical JSON: a key in ${where(path)} holds a lone surrogate`);
        members.push(`${JSON.stringify(key)}:${write(member, `${path}.${key}`)}`);
      }
      return `{${members.join(',')}}`;
    }
    default:
      throw new TypeError(
        `canonical JSON: ${where(path)} is ${typeof value}, which JSON cannot represent`,
      );
  }
}

function where(path: string): string {
  return path ? `the value at ${path.replace(/^\./, '')}` : 'the value';
}
