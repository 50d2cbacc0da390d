import { DomainError } from '../../common/domain-error';
import { ErrorCode } from '../../common/error-code';
import { hostAuthority } from '../../common/host-authority';
import type { RelyingParty } from './webauthn-verifier.repository';

/** How long a WebAuthn challenge may be answered. */
export const WEBAUTHN_CHALLENGE_SECONDS = 2 * 60;
export const WEBAUTHN_CHALLENGE_BYTES = 32;

/**
 * The relying party of a ceremony: the host of the configured public URL, else the Host the browser
 * used (validated: a host name or address with an optional port); the origin is `https://<host[:port]>`.
 */
export function relyingParty(
  publicUrl: string | undefined,
  host: string | undefined,
): RelyingParty {
  if (publicUrl) {
    const url = new URL(publicUrl);
    return { id: url.hostname, origin: url.origin };
  }
  const authority = host === undefined ? undefined : hostAuthority(host);
  if (authority === undefined) {
    throw new DomainError(
      ErrorCode.BadRequest,
      'the Host header must be a host name or IP address with an optional port; when the manager is reached through a proxy, set DEBVISOR_PUBLIC_URL',
    );
  }
  const id = authority.startsWith('[')
    ? authority.slice(1, authority.indexOf(']'))
    : authority.replace(/:\d+$/, '');
  return { id, origin: `https://${authority}` };
}
