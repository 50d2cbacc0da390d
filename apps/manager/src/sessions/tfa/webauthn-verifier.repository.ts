import { Injectable } from '@nestjs/common';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';

/** The relying party a ceremony is bound to: the RP ID (a host name) and the browser origin. */
export interface RelyingParty {
  readonly id: string;
  readonly origin: string;
}

/** A stored credential, as verification needs it. */
export interface KnownCredential {
  /** base64url */
  readonly credentialId: string;
  /** base64url COSE key */
  readonly publicKey: string;
  readonly counter: number;
  readonly transports: readonly string[];
}

export type Verified<T> =
  ({ readonly ok: true } & T) | { readonly ok: false; readonly reason: string };

/** Options for navigator.credentials.create() / get(), as JSON (PublicKeyCredential*OptionsJSON). */
export type CeremonyOptions = { readonly challenge: string } & Record<string, unknown>;

export const RP_NAME = 'DebVisor Datacenter Manager';

/**
 * The WebAuthn library (@simplewebauthn/server) behind a seam: ceremony options and the
 * cryptographic verification of the browser's answers. It keeps no state; challenges are the
 * caller's to store and to spend once.
 */
@Injectable()
export class WebauthnVerifierRepository {
  async registrationOptions(input: {
    rp: RelyingParty;
    userName: string;
    userDisplayName: string;
    challenge: Uint8Array;
    exclude: readonly KnownCredential[];
  }): Promise<CeremonyOptions> {
    const options = await generateRegistrationOptions({
      rpName: RP_NAME,
      rpID: input.rp.id,
      userName: input.userName,
      userDisplayName: input.userDisplayName,
      challenge: new Uint8Array(input.challenge),
      attestationType: 'none',
      excludeCredentials: input.exclude.map((c) => ({
        id: c.credentialId,
        transports: transports(c.transports),
      })),
      authenticatorSelection: { residentKey: 'discouraged', userVerification: 'preferred' },
      timeout: 120_000,
    });
    return { ...options };
  }

  async verifyRegistration(input: {
    response: unknown;
    challenge: string;
    rp: RelyingParty;
  }): Promise<Verified<{ credential: KnownCredential }>> {
    try {
      const result = await verifyRegistrationResponse({
        response: input.response as RegistrationResponseJSON,
        expectedChallenge: input.challenge,
        expectedOrigin: input.rp.origin,
        expectedRPID: input.rp.id,
        requireUserVerification: false,
      });
      if (!result.verified) return { ok: false, reason: 'the registration was not verified' };
      const { credential } = result.registrationInfo;
      return {
        ok: true,
        credential: {
          credentialId: credential.id,
          publicKey: Buffer.from(credential.publicKey).toString('base64url'),
          counter: credential.counter,
          transports: [...(credential.transports ?? [])],
        },
      };
    } catch (error) {
      return { ok: false, reason: error instanceof Error ? error.message : String(error) };
    }
  }

  async authenticationOptions(input: {
    rp: RelyingParty;
    challenge: Uint8Array;
    allow: readonly KnownCredential[];
  }): Promise<CeremonyOptions> {
    const options = await generateAuthenticationOptions({
      rpID: input.rp.id,
      challenge: new Uint8Array(input.challenge),
      allowCredentials: input.allow.map((c) => ({
        id: c.credentialId,
        transports: transports(c.transports),
      })),
      userVerification: 'preferred',
      timeout: 120_000,
    });
    return { ...options };
  }

  /** Checks the assertion (challenge, origin, RP ID, signature, and a counter that must grow when non-zero). */
  async verifyAuthentication(input: {
    response: unknown;
    challenge: string;
    rp: RelyingParty;
    credential: KnownCredential;
  }): Promise<Verified<{ newCounter: number }>> {
    try {
      const result = await verifyAuthenticationResponse({
        response: input.response as AuthenticationResponseJSON,
        expectedChallenge: input.challenge,
        expectedOrigin: input.rp.origin,
        expectedRPID: input.rp.id,
        credential: {
          id: input.credential.credentialId,
          publicKey: new Uint8Array(Buffer.from(input.credential.publicKey, 'base64url')),
          counter: input.credential.counter,
          transports: transports(input.credential.transports),
        },
        requireUserVerification: false,
      });
      if (!result.verified) return { ok: false, reason: 'the assertion was not verified' };
      return { ok: true, newCounter: result.authenticationInfo.newCounter };
    } catch (error) {
      return { ok: false, reason: error instanceof Error ? error.message : String(error) };
    }
  }
}

function transports(
  values: readonly string[],
): NonNullable<RegistrationResponseJSON['response']['transports']> {
  return values as NonNullable<RegistrationResponseJSON['response']['transports']>;
}
