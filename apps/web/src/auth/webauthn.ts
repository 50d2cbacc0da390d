import { api, unwrap } from '../api/client';

type Attachment = 'platform' | 'cross-platform';

/** The assertion POST /auth/tfa takes as `webauthn` (the JSON form of a PublicKeyCredential). */
export interface WebauthnAssertion {
  id: string;
  rawId: string;
  type: 'public-key';
  response: {
    clientDataJSON: string;
    authenticatorData: string;
    signature: string;
    userHandle?: string;
  };
  clientExtensionResults: Record<string, unknown>;
  authenticatorAttachment?: Attachment;
}

interface RequestOptionsJson {
  challenge: string;
  rpId?: string;
  timeout?: number;
  userVerification?: UserVerificationRequirement;
  allowCredentials?: { id: string; type: 'public-key'; transports?: AuthenticatorTransport[] }[];
}

export function fromBase64url(value: string): ArrayBuffer {
  const base64 = value
    .replace(/-/g, '+')
    .replace(/_/g, '/')
    .padEnd(Math.ceil(value.length / 4) * 4, '=');
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return bytes.buffer;
}

export function toBase64url(buffer: ArrayBuffer): string {
  let binary = '';
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * The WebAuthn second step in the browser: the manager's challenge for this pending login, the
 * authenticator's signature over it (the browser asks the user to touch the key), as JSON.
 */
export async function webauthnAssertion(): Promise<WebauthnAssertion> {
  if (!window.PublicKeyCredential || !navigator.credentials)
    throw new Error('this browser does not support security keys (WebAuthn)');
  const options = (await unwrap(
    api.POST('/api/v1/auth/tfa/webauthn/options'),
  )) as RequestOptionsJson;
  const credential = (await navigator.credentials.get({
    publicKey: {
      challenge: fromBase64url(options.challenge),
      rpId: options.rpId,
      timeout: options.timeout,
      userVerification: options.userVerification,
      allowCredentials: options.allowCredentials?.map((c) => ({
        id: fromBase64url(c.id),
        type: c.type,
        transports: c.transports,
      })),
    },
  })) as PublicKeyCredential | null;
  if (!credential) throw new Error('no security key answered');
  const response = credential.response as AuthenticatorAssertionResponse;
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: 'public-key',
    response: {
      clientDataJSON: toBase64url(response.clientDataJSON),
      authenticatorData: toBase64url(response.authenticatorData),
      signature: toBase64url(response.signature),
      ...(response.userHandle ? { userHandle: toBase64url(response.userHandle) } : {}),
    },
    clientExtensionResults: credential.getClientExtensionResults() as Record<string, unknown>,
    ...(credential.authenticatorAttachment
      ? { authenticatorAttachment: credential.authenticatorAttachment as Attachment }
      : {}),
  };
}

/** POST /access/tfa/webauthn/options answers this: PublicKeyCredentialCreationOptionsJSON (binary fields base64url). */
export interface CreationOptionsJson {
  challenge: string;
  rp: { id?: string; name: string };
  user: { id: string; name: string; displayName: string };
  pubKeyCredParams: { type: 'public-key'; alg: number }[];
  timeout?: number;
  excludeCredentials?: { id: string; type: 'public-key'; transports?: AuthenticatorTransport[] }[];
  authenticatorSelection?: AuthenticatorSelectionCriteria;
  attestation?: AttestationConveyancePreference;
  extensions?: AuthenticationExtensionsClientInputs;
}

/** The registration POST /access/tfa/webauthn takes as `response` (the JSON form of a new PublicKeyCredential). */
export interface WebauthnAttestation {
  id: string;
  rawId: string;
  type: 'public-key';
  response: { clientDataJSON: string; attestationObject: string; transports?: string[] };
  clientExtensionResults: Record<string, unknown>;
  authenticatorAttachment?: Attachment;
}

/** The manager's JSON creation options as navigator.credentials.create() takes them: the base64url fields as bytes. */
export function creationOptionsFromJson(
  options: CreationOptionsJson,
): PublicKeyCredentialCreationOptions {
  return {
    ...options,
    challenge: fromBase64url(options.challenge),
    user: { ...options.user, id: fromBase64url(options.user.id) },
    excludeCredentials: (options.excludeCredentials ?? []).map((c) => ({
      ...c,
      id: fromBase64url(c.id),
    })),
  };
}

/**
 * Registers a new security key in the browser: the authenticator creates a credential for the
 * manager's options (the browser asks the user to touch the key), answered as JSON.
 */
export async function webauthnAttestation(
  options: CreationOptionsJson,
): Promise<WebauthnAttestation> {
  if (!window.PublicKeyCredential || !navigator.credentials)
    throw new Error('this browser does not support security keys (WebAuthn)');
  const credential = (await navigator.credentials.create({
    publicKey: creationOptionsFromJson(options),
  })) as PublicKeyCredential | null;
  if (!credential) throw new Error('no security key answered');
  const response = credential.response as AuthenticatorAttestationResponse;
  const transports = typeof response.getTransports === 'function' ? response.getTransports() : [];
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: 'public-key',
    response: {
      clientDataJSON: toBase64url(response.clientDataJSON),
      attestationObject: toBase64url(response.attestationObject),
      ...(transports.length > 0 ? { transports } : {}),
    },
    clientExtensionResults: credential.getClientExtensionResults() as Record<string, unknown>,
    ...(credential.authenticatorAttachment
      ? { authenticatorAttachment: credential.authenticatorAttachment as Attachment }
      : {}),
  };
}
