import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, credential, errorMessage, oidcLoginUrl, unwrap } from './client';

function stubFetch(
  answer: () => Response = () =>
    new Response('{}', { status: 200, headers: { 'Content-Type': 'application/json' } }),
) {
  const fetch = vi.fn(async (_request: Request) => answer());
  vi.stubGlobal('fetch', fetch);
  return fetch;
}

/** The request the client sent: method, URL, the headers that matter, credentials mode and body. */
async function sent(fetch: ReturnType<typeof stubFetch>, index = 0) {
  const request = fetch.mock.calls[index][0];
  return {
    method: request.method,
    url: request.url,
    authorization: request.headers.get('Authorization'),
    csrf: request.headers.get('X-CSRF-Token'),
    contentType: request.headers.get('Content-Type'),
    credentials: request.credentials,
    body: await request.text(),
  };
}

describe('API client', () => {
  beforeEach(() => {
    const store = new Map<string, string>();
    vi.stubGlobal('sessionStorage', {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => store.set(k, v),
      removeItem: (k: string) => store.delete(k),
    });
    credential.clear();
  });
  afterEach(() => vi.unstubAllGlobals());

  it('sends the API token as a Bearer header without cookies, and drops empty query parameters', async () => {
    const fetch = stubFetch(() => Response.json({ items: [], remotes: [] }));
    credential.useToken('dvdm_x');
    await unwrap(
      api.GET('/api/v1/resources', { params: { query: { remote: 'dc-east', name: undefined } } }),
    );
    expect(await sent(fetch)).toMatchObject({
      method: 'GET',
      url: 'http://localhost/api/v1/resources?remote=dc-east',
      authorization: 'Bearer dvdm_x',
      csrf: null,
      credentials: 'omit',
    });
  });

  it.each([
    ['POST', () => unwrap(api.POST('/api/v1/auth/logout'))],
    [
      'PUT',
      () =>
        unwrap(
          api.PUT('/api/v1/access/acl', {
            body: { path: '/', principal: 'a@local', role: 'Audit', propagate: true } as never,
          }),
        ),
    ],
    [
      'DELETE',
      () =>
        unwrap(api.DELETE('/api/v1/remotes/{remote}', { params: { path: { remote: 'dc-east' } } })),
    ],
  ])(
    'sends the session CSRF token on a %s with the cookie, and no Authorization header',
    async (method, write) => {
      const fetch = stubFetch();
      credential.useSession('csrf-1');
      await write();
      expect(await sent(fetch)).toMatchObject({
        method,
        credentials: 'same-origin',
        csrf: 'csrf-1',
        authorization: null,
      });
    },
  );

  it('sends no CSRF token on a GET with the session', async () => {
    const fetch = stubFetch();
    credential.useSession('csrf-1');
    await unwrap(api.GET('/api/v1/auth/session'));
    expect(await sent(fetch)).toMatchObject({
      method: 'GET',
      csrf: null,
      authorization: null,
      credentials: 'same-origin',
    });
  });

  it('never sends the CSRF token together with an API token, even one known from an earlier session', async () => {
    const fetch = stubFetch();
    credential.useSession('csrf-1');
    credential.useToken('dvdm_x');
    await unwrap(api.POST('/api/v1/access/tokens/mine', { body: { name: 'a' } as never }));
    expect(await sent(fetch)).toMatchObject({
      authorization: 'Bearer dvdm_x',
      csrf: null,
      credentials: 'omit',
      contentType: 'application/json',
      body: '{"name":"a"}',
    });
  });

  it('forgets the API token when switching to the session, so that the cookie is the credential', async () => {
    const fetch = stubFetch();
    credential.useToken('dvdm_x');
    credential.useSession('csrf-2');
    await unwrap(api.POST('/api/v1/auth/logout'));
    expect(await sent(fetch)).toMatchObject({ authorization: null, csrf: 'csrf-2' });
    expect(credential.token()).toBeNull();
  });

  it('answers undefined for 204 No Content', async () => {
    stubFetch(() => new Response(null, { status: 204 }));
    credential.useSession('csrf-1');
    await expect(unwrap(api.POST('/api/v1/auth/logout'))).resolves.toBeUndefined();
  });

  it('turns the JSON error shape into an ApiError with code and trace id', async () => {
    stubFetch(
      () =>
        new Response('{"error":{"code":"unauthenticated","message":"no token","traceId":"t1"}}', {
          status: 401,
        }),
    );
    const error = await unwrap(api.GET('/api/v1/remotes')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({
      status: 401,
      code: 'unauthenticated',
      message: 'no token',
      traceId: 't1',
    });
    expect(errorMessage(error)).toBe('no token');
  });

  it('says when to try again after a 429, from Retry-After', async () => {
    stubFetch(
      () =>
        new Response(
          '{"error":{"code":"rate_limited","message":"too many login attempts from this address; retry later","traceId":"t2"}}',
          {
            status: 429,
            headers: { 'Retry-After': '42' },
          },
        ),
    );
    const error = await unwrap(
      api.POST('/api/v1/auth/login', { body: { username: 'a', password: 'b' } }),
    ).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 429, code: 'rate_limited', retryAfterSeconds: 42 });
    expect(errorMessage(error)).toBe(
      'too many login attempts from this address; retry later (try again in 42 s)',
    );
  });

  it('says "try again later" for a 429 without a readable Retry-After', () => {
    expect(errorMessage(new ApiError(429, 'rate_limited', 'slow down'))).toBe(
      'slow down (try again later)',
    );
  });

  it('builds the single sign-on URL with the realm encoded', () => {
    expect(oidcLoginUrl('corp')).toBe('/api/v1/auth/oidc/corp/login');
    expect(oidcLoginUrl('a/../b')).toBe('/api/v1/auth/oidc/a%2F..%2Fb/login');
  });
});
