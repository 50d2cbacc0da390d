import { describe, expect, it } from 'vitest';
import {
  creationOptionsFromJson,
  fromBase64url,
  toBase64url,
  type CreationOptionsJson,
} from './webauthn';

const bytes = (buffer: BufferSource) => [
  ...new Uint8Array(buffer instanceof ArrayBuffer ? buffer : buffer.buffer),
];

describe('WebAuthn base64url conversions', () => {
  it('round-trips bytes of every length through base64url without padding, using - and _', () => {
    for (const length of [0, 1, 2, 3, 4, 31, 32, 33]) {
      const data = Uint8Array.from({ length }, (_, i) => (i * 67 + 251) % 256);
      const text = toBase64url(data.buffer);
      expect(text).toMatch(/^[A-Za-z0-9_-]*$/);
      expect(bytes(fromBase64url(text))).toEqual([...data]);
    }
    expect(toBase64url(Uint8Array.from([0xfb, 0xff, 0xbf]).buffer)).toBe('-_-_');
  });

  it('turns the manager’s creation options into create() options: challenge, user id and excluded ids as bytes, the rest kept', () => {
    const json: CreationOptionsJson = {
      challenge: 'AAEC',
      rp: { id: 'localhost', name: 'DebVisor' },
      user: { id: '-_8', name: 'admin@local', displayName: 'admin@local' },
      pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
      timeout: 60000,
      excludeCredentials: [{ id: 'qro', type: 'public-key', transports: ['usb'] }],
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
      attestation: 'none',
    };
    const options = creationOptionsFromJson(json);
    expect(bytes(options.challenge)).toEqual([0, 1, 2]);
    expect(bytes(options.user.id)).toEqual([0xfb, 0xff]);
    expect(options.user.name).toBe('admin@local');
    expect(options.excludeCredentials).toHaveLength(1);
    expect(bytes(options.excludeCredentials![0].id)).toEqual([0xaa, 0xba]);
    expect(options.excludeCredentials![0].transports).toEqual(['usb']);
    expect(options.rp).toEqual({ id: 'localhost', name: 'DebVisor' });
    expect(options.pubKeyCredParams).toEqual([{ type: 'public-key', alg: -7 }]);
    expect(options.attestation).toBe('none');
  });

  it('gives an empty exclusion list when the manager sends none', () => {
    const options = creationOptionsFromJson({
      challenge: 'AA',
      rp: { name: 'x' },
      user: { id: 'AA', name: 'a', displayName: 'a' },
      pubKeyCredParams: [],
    });
    expect(options.excludeCredentials).toEqual([]);
  });
});
