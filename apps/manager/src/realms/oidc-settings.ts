import { splitPemBundle } from '@debvisor/pki';
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';

/** RFC 6749 §3.3 scope-token: printable ASCII without space, `"` and `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

const claimName = z.string().trim().min(1).max(128);

const issuerUrl = z
  .url({ protocol: /^https$/, error: 'expected an https:// URL' })
  .max(2048)
  .refine((value) => {
    const url = new URL(value);
    return url.search === '' && url.hash === '' && url.username === '' && url.password === '';
  }, 'an issuer URL carries no query, fragment or credentials');

const caPem = z
  .string()
  .max(65_536)
  .superRefine((value, ctx) => {
    const certificates = splitPemBundle(value);
    const rest = value
      .replace(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g, '')
      .trim();
    if (certificates.length === 0 || rest !== '') {
      ctx.addIssue({
        code: 'custom',
        message: 'expected one or more PEM certificates and nothing else',
      });
      return;
    }
    for (const certificate of certificates) {
      try {
        new X509Certificate(certificate);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'a PEM block is not a valid X.509 certificate' });
        return;
      }
    }
  });

/**
 * An OpenID Connect realm's settings (stored in `realms.settings`; never a secret: the client secret
 * is sealed separately and handed to OidcClientRepository as its own argument).
 */
export const oidcRealmSettingsSchema = z.strictObject({
  /** The issuer identifier; discovery reads `<issuerUrl>/.well-known/openid-configuration`. */
  issuerUrl,
  clientId: z.string().min(1).max(255),
  /** Asked for at the authorization endpoint; must include `openid`. */
  scopes: z
    .array(
      z
        .string()
        .max(64)
        .regex(SCOPE_TOKEN, 'a scope is printable ASCII without spaces, quotes or backslashes'),
    )
    .min(1)
    .max(32)
    .default(['openid', 'profile', 'email'])
    .refine((scopes) => scopes.includes('openid'), 'the scopes must include openid')
    .transform((scopes) => [...new Set(scopes)]),
  /** The ID token (or userinfo) claim that names the user. */
  usernameClaim: claimName.default('preferred_username'),
  /** The claim listing the user's groups: an array of strings, or one string. */
  groupsClaim: claimName.default('groups'),
  /** Further `aud` values an ID token may carry next to the client id (which it must always carry). */
  audiences: z.array(z.string().min(1).max(255)).max(16).optional(),
  /**
   * PEM certificate(s) of the CA(s) that sign the issuer's TLS certificate. When set, they are the
   * only roots trusted for this issuer (instead of the system's); verification is never disabled.
   */
  caPem: caPem.optional(),
  /** Per HTTP request to the issuer (discovery, token, userinfo). */
  timeoutMs: z.number().int().min(100).max(60_000).default(5000),
});

export type OidcRealmSettings = z.infer<typeof oidcRealmSettingsSchema>;
