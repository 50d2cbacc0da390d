import { X509Certificate } from 'node:crypto';
import { FilterParser } from 'ldapts';
import { z } from 'zod';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** An LDAP URL naming only scheme, host and port (what the client connects to). */
function isServerUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  return (
    (url.protocol === 'ldap:' || url.protocol === 'ldaps:') &&
    url.hostname !== '' &&
    url.username === '' &&
    url.password === '' &&
    (url.pathname === '' || url.pathname === '/') &&
    url.search === '' &&
    url.hash === ''
  );
}

/** One or more PEM certificates that all parse, and nothing else (no private key). */
function isCertificateBundle(value: string): boolean {
  const blocks = value.match(PEM_CERTIFICATE);
  if (!blocks || value.replace(PEM_CERTIFICATE, '').trim() !== '') return false;
  try {
    for (const block of blocks) new X509Certificate(block);
    return true;
  } catch {
    return false;
  }
}

/**
 * An RFC 4515 filter in parentheses: every unescaped parenthesis is structure (values escape theirs
 * as \28 and \29), so they must balance and close only at the end.
 */
function isParenthesizedFilter(value: string): boolean {
  if (!value.startsWith('(') || !value.endsWith(')')) return false;
  let depth = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\') {
      if (!/^[0-9a-fA-F]{2}$/.test(value.slice(i + 1, i + 3))) return false;
      i += 2;
    } else if (c === '(') {
      depth++;
    } else if (c === ')') {
      depth--;
      if (depth < 0 || (depth === 0 && i !== value.length - 1)) return false;
    } else if (c === '\0') {
      return false;
    }
  }
  if (depth !== 0) return false;
  try {
    FilterParser.parseString(value);
    return true;
  } catch {
    return false;
  }
}

const dn = z
  .string()
  .trim()
  .min(3)
  .max(1024)
  .refine(
    (value) => value.includes('=') && !/[\0\r\n]/.test(value),
    'must be a distinguished name such as ou=people,dc=example,dc=com',
  );

const filter = (fallback: string) =>
  z
    .string()
    .trim()
    .max(4096)
    .refine(
      isParenthesizedFilter,
      'must be an LDAP filter in parentheses, such as (objectClass=person)',
    )
    .default(fallback);

/** An attribute description: a name (letters, digits, hyphens) or a numeric OID. */
const attribute = (fallback: string) =>
  z
    .string()
    .trim()
    .max(128)
    .regex(
      /^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)$/,
      'must be an attribute name such as uid or sAMAccountName',
    )
    .default(fallback);

/**
 * An LDAP / Active Directory realm's settings (nothing secret: the bind password is stored and
 * handed over separately). Certificate verification cannot be turned off: `caPem` only narrows
 * which CA the server's certificate must chain to (the system's CAs when unset).
 */
export const ldapRealmSettingsSchema = z
  .strictObject({
    url: z
      .string()
      .trim()
      .max(2048)
      .refine(
        isServerUrl,
        'must be ldap://host[:port] or ldaps://host[:port], without a path, query or credentials',
      ),
    startTls: z.boolean().default(false),
    caPem: z
      .string()
      .trim()
      .max(65_536)
      .refine(
        isCertificateBundle,
        'must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)',
      )
      .optional(),
    /** The service account to search with; anonymous when unset. */
    bindDn: dn.optional(),
    userBaseDn: dn,
    userFilter: filter('(objectClass=inetOrgPerson)'),
    usernameAttribute: attribute('uid'),
    displayNameAttribute: attribute('cn'),
    emailAttribute: attribute('mail'),
    groupBaseDn: dn,
    groupFilter: filter(
      '(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))',
    ),
    groupNameAttribute: attribute('cn'),
    /** Its values are the DNs of the members. */
    groupMemberAttribute: attribute('member'),
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
  })
  .superRefine((settings, ctx) => {
    if (!settings.startTls && settings.url.toLowerCase().startsWith('ldap:')) {
      ctx.addIssue({
        code: 'custom',
        path: ['startTls'],
        message:
          'an ldap:// URL needs StartTLS (startTls: true), or use ldaps://: without it the bind password and users’ passwords travel in clear',
      });
    }
    if (settings.startTls && settings.url.toLowerCase().startsWith('ldaps:')) {
      ctx.addIssue({
        code: 'custom',
        path: ['startTls'],
        message: 'StartTLS is for ldap:// URLs; an ldaps:// connection is already encrypted',
      });
    }
  });

export type LdapRealmSettings = z.infer<typeof ldapRealmSettingsSchema>;
