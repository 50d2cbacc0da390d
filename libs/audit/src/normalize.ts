import {
  AUDIT_ACTION,
  AUDIT_LIMITS,
  type AuditDetails,
  type AuditDetailValue,
  type AuditEvent,
  type AuditOutcome,
} from './audit-entry';
import { LONE_SURROGATE } from './canonical-json';

/** What code hands to an audit writer; normalizeEvent turns it into a storable AuditEvent. */
export interface AuditEventInput {
  readonly at: Date;
  readonly principal?: string | null;
  readonly action: string;
  readonly target?: string | null;
  readonly outcome: AuditOutcome;
  readonly traceId?: string | null;
  readonly source?: string | null;
  readonly details?: Readonly<Record<string, unknown>>;
}

export const REDACTED = '[redacted]';

/**
 * Member names whose values are never recorded, whatever they hold (compared in lower case without
 * `-`, `_` and `.`): a second line of defence behind code that only records what it means to.
 */
const SECRET_NAMES = new Set([
  'authorization',
  'password',
  'passwd',
  'passphrase',
  'secret',
  'clientsecret',
  'token',
  'accesstoken',
  'refreshtoken',
  'idtoken',
  'bearer',
  'apikey',
  'key',
  'privatekey',
  'keypem',
  'sealedkey',
  'secrethash',
  'cookie',
  'setcookie',
  'session',
  'sessionid',
  'csrftoken',
  'otp',
  'totp',
  'tfacode',
  'credential',
]);

/** Secrets recognisable in any text: DebVisor tokens and keys keep their public id only. */
const SECRET_PATTERNS: readonly [RegExp, string][] = [
  [/(?<![A-Za-z0-9])(dvdm|dvk)_([0-9a-f]{16})_[A-Za-z0-9_-]{8,}/g, `$1_$2_${REDACTED}`],
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`],
  [
    /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g,
    `[redacted private key]`,
  ],
];

/** True when a member of this name is never recorded. */
export function isSecretName(name: string): boolean {
  return SECRET_NAMES.has(name.toLowerCase().replace(/[-_.]/g, ''));
}

/** Text with recognisable secrets replaced (token and key ids stay, their secrets go). */
export function redactText(text: string): string {
  let result = text;
  for (const [pattern, replacement] of SECRET_PATTERNS)
    result = result.replace(pattern, replacement);
  return result;
}

/**
 * Makes text storable and hashable as it will be read back: lone surrogates and NUL (which
 * PostgreSQL text and jsonb cannot hold) become U+FFFD, secrets are redacted, the length bounded.
 */
export function cleanText(text: string, max: number): string {
  let result = redactText(text.replaceAll('\u0000', '\uFFFD'));
  if (result.length > max) result = `${result.slice(0, max - 1)}…`;
  return result.replace(new RegExp(LONE_SURROGATE.source, 'g'), '\uFFFD');
}

function cleanNullable(text: string | null | undefined, max: number): string | null {
  return text === undefined || text === null || text === '' ? null : cleanText(text, max);
}

/**
 * The event as it is stored and hashed: times in UTC with milliseconds, every text cleaned and
 * bounded, details reduced to plain JSON with secrets redacted. Throws for an action name outside
 * the vocabulary's shape (a programming error, not input).
 */
export function normalizeEvent(input: AuditEventInput): AuditEvent {
  if (input.action.length > AUDIT_LIMITS.action || !AUDIT_ACTION.test(input.action)) {
    throw new Error(`not an audit action name: ${JSON.stringify(input.action)}`);
  }
  if (Number.isNaN(input.at.getTime())) throw new Error('an audit event needs a valid time');
  return {
    ts: input.at.toISOString(),
    principal: cleanNullable(input.principal, AUDIT_LIMITS.principal),
    action: input.action,
    target: cleanNullable(input.target, AUDIT_LIMITS.target),
    outcome: input.outcome,
    traceId: cleanNullable(input.traceId, AUDIT_LIMITS.traceId),
    source: cleanNullable(input.source, AUDIT_LIMITS.source),
    details: cleanDetails(input.details ?? {}),
  };
}

/** Details as plain JSON: secrets by name and by pattern redacted, strings, arrays and depth bounded. */
export function cleanDetails(details: Readonly<Record<string, unknown>>): AuditDetails {
  const cleaned = cleanValue(details, 0);
  return cleaned !== null && typeof cleaned === 'object' && !Array.isArray(cleaned) ? cleaned : {};
}

function cleanValue(value: unknown, depth: number): AuditDetailValue | undefined {
  switch (typeof value) {
    case 'string':
      return cleanText(value, AUDIT_LIMITS.detailString);
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  if (value === null) return null;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return '[binary]';
  if (value instanceof Error) return cleanText(value.message, AUDIT_LIMITS.detailString);
  if (depth >= AUDIT_LIMITS.detailDepth) return '[too deep]';
  if (Array.isArray(value)) {
    const items = value
      .slice(0, AUDIT_LIMITS.detailItems)
      .map((item) => cleanValue(item, depth + 1) ?? null);
    if (value.length > AUDIT_LIMITS.detailItems)
      items.push(`[${value.length - AUDIT_LIMITS.detailItems} more]`);
    return items;
  }
  const result: Record<string, AuditDetailValue> = {};
  for (const [rawKey, member] of Object.entries(value as Record<string, unknown>)) {
    const key = cleanText(rawKey, 128);
    if (isSecretName(rawKey)) {
      if (member !== undefined && member !== null) result[key] = REDACTED;
      continue;
    }
    const cleaned = cleanValue(member, depth + 1);
    if (cleaned !== undefined) result[key] = cleaned;
  }
  return result;
}
