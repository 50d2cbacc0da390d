import { createCa } from '@debvisor/pki';
import { freePort, startOidcProvider, type OidcProviderInstance } from '@debvisor/testing';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { OidcClientRepository } from './oidc-client.repository';
import { oidcRealmSettingsSchema, type OidcRealmSettings } from './oidc-settings';

const REDIRECT_URI = 'https://manager.example.test/api/v1/auth/oidc/callback';
const CLIENT_ID = 'debvisor-manager';
const CLIENT_SECRET = 'a-client-secret-of-some-length';

describe('OidcClientRepository against a real oidc-provider', () => {
  let provider: OidcProviderInstance;
  let settings: OidcRealmSettings;
  const repository = new OidcClientRepository();

  beforeAll(async () => {
    provider = await startOidcProvider({
      clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT_URI] }],
      accounts: {
        alice: {
          sub: 'sub-alice-1',
          claims: {
            preferred_username: 'alice',
            name: 'Alice Liddell',
            email: 'alice@example.test',
            email_verified: true,
            groups: ['ops', 'dev'],
          },
        },
        bob: { claims: { preferred_username: 'bob', groups: 'ops' } },
        carol: {
          claims: {
            preferred_username: 'carol',
            email: 'carol@example.test',
            email_verified: false,
          },
        },
        nameless: { claims: { email: 'nameless@example.test', groups: ['ops'] } },
      },
    });
    settings = oidcRealmSettingsSchema.parse({
      issuerUrl: provider.issuer,
      clientId: CLIENT_ID,
      scopes: ['openid', 'profile', 'email', 'groups'],
      caPem: provider.caPem,
    });
  });

  afterAll(() => provider?.stop());

  async function loginAs(login: string, realm = settings) {
    const start = await repository.beginLogin(realm, CLIENT_SECRET, REDIRECT_URI);
    const callback = new URL(await provider.login(start.authorizationUrl, login));
    return { start, callback };
  }

  async function failure(promise: Promise<unknown>): Promise<DomainError> {
    const error = await promise.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(DomainError);
    return error as DomainError;
  }

  it('builds an authorization URL with PKCE S256, state, nonce and the realm scopes', async () => {
    const start = await repository.beginLogin(settings, CLIENT_SECRET, REDIRECT_URI);
    const url = new URL(start.authorizationUrl);
    expect(url.origin).toBe(provider.issuer);
    expect(Object.fromEntries(url.searchParams)).toMatchObject({
      client_id: CLIENT_ID,
      response_type: 'code',
      redirect_uri: REDIRECT_URI,
      scope: 'openid profile email groups',
      code_challenge_method: 'S256',
      state: start.state,
      nonce: start.nonce,
    });
    expect(url.searchParams.get('code_challenge')).not.toBe(start.codeVerifier);
    const again = await repository.beginLogin(settings, CLIENT_SECRET, REDIRECT_URI);
    expect(again.state).not.toBe(start.state);
    expect(again.nonce).not.toBe(start.nonce);
    expect(again.codeVerifier).not.toBe(start.codeVerifier);
  });

  it('completes a login with the username, email, name and groups from the ID token claims', async () => {
    const { start, callback } = await loginAs('alice');
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('state')).toBe(start.state);

    const identity = await repository.completeLogin(
      settings,
      CLIENT_SECRET,
      REDIRECT_URI,
      callback,
      start,
    );
    expect(identity).toEqual({
      subject: 'sub-alice-1',
      username: 'alice',
      email: 'alice@example.test',
      displayName: 'Alice Liddell',
      groups: ['ops', 'dev'],
    });
  });

  it('answers the groups the account has at the time of the login', async () => {
    const first = await loginAs('alice');
    expect(
      (
        await repository.completeLogin(
          settings,
          CLIENT_SECRET,
          REDIRECT_URI,
          first.callback,
          first.start,
        )
      ).groups,
    ).toEqual(['ops', 'dev']);

    const before = provider.accounts.alice!.claims.groups;
    provider.accounts.alice!.claims.groups = ['auditors'];
    try {
      const second = await loginAs('alice');
      expect(
        (
          await repository.completeLogin(
            settings,
            CLIENT_SECRET,
            REDIRECT_URI,
            second.callback,
            second.start,
          )
        ).groups,
      ).toEqual(['auditors']);
    } finally {
      provider.accounts.alice!.claims.groups = before;
    }
  });

  it('takes a single string groups claim as one group, and no groups claim as no groups', async () => {
    const bob = await loginAs('bob');
    const bobIdentity = await repository.completeLogin(
      settings,
      CLIENT_SECRET,
      REDIRECT_URI,
      bob.callback,
      bob.start,
    );
    expect(bobIdentity).toMatchObject({
      subject: 'bob',
      username: 'bob',
      groups: ['ops'],
      email: null,
      displayName: null,
    });

    const carol = await loginAs('carol');
    expect(
      (
        await repository.completeLogin(
          settings,
          CLIENT_SECRET,
          REDIRECT_URI,
          carol.callback,
          carol.start,
        )
      ).groups,
    ).toEqual([]);
  });

  it('drops an email address the provider marks as unverified', async () => {
    const { start, callback } = await loginAs('carol');
    expect(
      (await repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, callback, start))
        .email,
    ).toBeNull();
  });

  it('reads the username from the configured claim', async () => {
    const byEmail = { ...settings, usernameClaim: 'email' };
    const { start, callback } = await loginAs('nameless', byEmail);
    expect(
      (await repository.completeLogin(byEmail, CLIENT_SECRET, REDIRECT_URI, callback, start))
        .username,
    ).toBe('nameless@example.test');
  });

  it('refuses a login whose ID token lacks the username claim (unauthenticated)', async () => {
    const { start, callback } = await loginAs('nameless');
    const error = await failure(
      repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, callback, start),
    );
    expect(error.code).toBe(ErrorCode.Unauthenticated);
    expect(error.message).toContain('"preferred_username"');
  });

  it('refuses a callback whose state was tampered with (unauthenticated)', async () => {
    const { start, callback } = await loginAs('alice');
    const tampered = new URL(callback);
    tampered.searchParams.set('state', `${start.state}x`);
    const error = await failure(
      repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, tampered, start),
    );
    expect(error.code).toBe(ErrorCode.Unauthenticated);
    expect(error.message).toMatch(/state/);

    const withoutState = new URL(callback);
    withoutState.searchParams.delete('state');
    expect(
      (
        await failure(
          repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, withoutState, start),
        )
      ).code,
    ).toBe(ErrorCode.Unauthenticated);

    // The untouched callback still works: nothing was redeemed by the refused attempts.
    expect(
      (await repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, callback, start))
        .username,
    ).toBe('alice');
  });

  it('refuses the callback of another login attempt (state mismatch, unauthenticated)', async () => {
    const mine = await repository.beginLogin(settings, CLIENT_SECRET, REDIRECT_URI);
    const theirs = await loginAs('alice');
    const error = await failure(
      repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, theirs.callback, mine),
    );
    expect(error.code).toBe(ErrorCode.Unauthenticated);
  });

  it('refuses an ID token whose nonce belongs to another login attempt (unauthenticated)', async () => {
    const other = await repository.beginLogin(settings, CLIENT_SECRET, REDIRECT_URI);
    const { start, callback } = await loginAs('alice');
    const error = await failure(
      repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, callback, {
        ...start,
        nonce: other.nonce,
      }),
    );
    expect(error.code).toBe(ErrorCode.Unauthenticated);
  });

  it('refuses a code redeemed with the wrong PKCE verifier (unauthenticated)', async () => {
    const other = await repository.beginLogin(settings, CLIENT_SECRET, REDIRECT_URI);
    const { start, callback } = await loginAs('alice');
    const error = await failure(
      repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, callback, {
        ...start,
        codeVerifier: other.codeVerifier,
      }),
    );
    expect(error.code).toBe(ErrorCode.Unauthenticated);
  });

  it('refuses to redeem the same authorization code twice (unauthenticated)', async () => {
    const { start, callback } = await loginAs('alice');
    await repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, callback, start);
    const error = await failure(
      repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, callback, start),
    );
    expect(error.code).toBe(ErrorCode.Unauthenticated);
    expect(error.message).not.toContain(callback.searchParams.get('code')!);
  });

  it('refuses a callback carrying an invented code (unauthenticated)', async () => {
    const { start, callback } = await loginAs('alice');
    const forged = new URL(callback);
    forged.searchParams.set('code', 'invented-code');
    expect(
      (
        await failure(
          repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, forged, start),
        )
      ).code,
    ).toBe(ErrorCode.Unauthenticated);
  });

  it('reports a provider that refuses the client secret as realm_unavailable, without the secret', async () => {
    const { start, callback } = await loginAs('alice');
    const wrongSecret = 'not-the-client-secret';
    const error = await failure(
      repository.completeLogin(settings, wrongSecret, REDIRECT_URI, callback, start),
    );
    expect(error.code).toBe(ErrorCode.RealmUnavailable);
    expect(error.message).toMatch(/client credentials/);
    expect(error.message).not.toContain(wrongSecret);
  });

  it('fails with realm_unavailable when the issuer certificate is not signed by the configured caPem', async () => {
    const otherCa = await createCa('Some other CA');
    const error = await failure(
      repository.beginLogin({ ...settings, caPem: otherCa.certPem }, CLIENT_SECRET, REDIRECT_URI),
    );
    expect(error.code).toBe(ErrorCode.RealmUnavailable);
    expect(error.message).toMatch(/TLS certificate is not trusted/);
  });

  it('fails with realm_unavailable when no caPem is configured and the system roots do not trust the issuer', async () => {
    const { caPem: _ignored, ...withoutCa } = settings;
    const error = await failure(repository.beginLogin(withoutCa, CLIENT_SECRET, REDIRECT_URI));
    expect(error.code).toBe(ErrorCode.RealmUnavailable);
  });

  it('fails with realm_unavailable when nothing listens at the issuer', async () => {
    const port = await freePort();
    const unreachable = { ...settings, issuerUrl: `https://127.0.0.1:${port}` };
    const error = await failure(repository.beginLogin(unreachable, CLIENT_SECRET, REDIRECT_URI));
    expect(error.code).toBe(ErrorCode.RealmUnavailable);
    expect(error.message).toMatch(/connection refused/);
  });

  it('fails with realm_unavailable when the issuer does not answer within timeoutMs', async () => {
    const silent: Server = createServer(() => undefined);
    const port = await freePort();
    await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve));
    try {
      const slow = { ...settings, issuerUrl: `https://127.0.0.1:${port}`, timeoutMs: 300 };
      const started = Date.now();
      const error = await failure(repository.beginLogin(slow, CLIENT_SECRET, REDIRECT_URI));
      expect(error.code).toBe(ErrorCode.RealmUnavailable);
      expect(error.message).toMatch(/did not answer within 300 ms/);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      silent.close();
    }
  });

  it('fails with realm_unavailable when the issuer stops answering after discovery', async () => {
    const own = await startOidcProvider({
      clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT_URI] }],
      accounts: { alice: { claims: { preferred_username: 'alice' } } },
    });
    const realm = { ...settings, issuerUrl: own.issuer, caPem: own.caPem };
    const { start, callback } = await (async () => {
      const begun = await repository.beginLogin(realm, CLIENT_SECRET, REDIRECT_URI);
      return { start: begun, callback: new URL(await own.login(begun.authorizationUrl, 'alice')) };
    })();
    await own.stop();
    const error = await failure(
      repository.completeLogin(realm, CLIENT_SECRET, REDIRECT_URI, callback, start),
    );
    expect(error.code).toBe(ErrorCode.RealmUnavailable);
  });
});

describe('OidcClientRepository with a provider that puts profile claims only in userinfo', () => {
  let provider: OidcProviderInstance;
  const repository = new OidcClientRepository();

  beforeAll(async () => {
    provider = await startOidcProvider({
      clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT_URI] }],
      accounts: { dave: { claims: { preferred_username: 'dave', groups: ['ops'] } } },
      claimsInIdToken: false,
    });
  });

  afterAll(() => provider?.stop());

  it('reads the username and groups from the userinfo endpoint when the ID token lacks them', async () => {
    const settings = oidcRealmSettingsSchema.parse({
      issuerUrl: provider.issuer,
      clientId: CLIENT_ID,
      scopes: ['openid', 'profile', 'groups'],
      caPem: provider.caPem,
    });
    const start = await repository.beginLogin(settings, CLIENT_SECRET, REDIRECT_URI);
    const callback = new URL(await provider.login(start.authorizationUrl, 'dave'));
    expect(
      await repository.completeLogin(settings, CLIENT_SECRET, REDIRECT_URI, callback, start),
    ).toMatchObject({
      subject: 'dave',
      username: 'dave',
      groups: ['ops'],
    });
  });
});
