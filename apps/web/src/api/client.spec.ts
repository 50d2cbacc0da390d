import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, apiDelete, apiGet, apiPost, apiPut, credential, errorMessage, oidcLoginUrl } from './client';

type FetchInit = { method: string; headers: Record<string, string>; credentials: RequestCredentials; body?: string };

function stubFetch(answer: () => Response = () => new Response('{}', { status: 200 })) {
  const fetch = vi.fn(async (_url: string, _init: FetchInit) => answer());
  vi.stubGlobal('fetch', fetch);
  return fetch;
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
    const fetch = stubFetch(() => new Response('{"items":[]}', { status: 200 }));
    credential.useToken('dvdm_x');
    await apiGet('/resources', { remote: 'dc-east', type: '', name: undefined });
    expect(fetch).toHaveBeenCalledWith('/api/v1/resources?remote=dc-east', {
      method: 'GET',
      headers: { Accept: 'application/json', Authorization: 'Bearer dvdm_x' },
      credentials: 'omit',
    });
  });

  it.each([
    ['POST', () => apiPost('/auth/logout')],
    ['PUT', () => apiPut('/things/a', { x: 1 })],
    ['DELETE', () => apiDelete('/things/a')],
  ])('sends the session CSRF token on a %s with the cookie, and no Authorization header', async (method, write) => {
    const fetch = stubFetch();
    credential.useSession('csrf-1');
    await write();
    const init = fetch.mock.calls[0][1];
    expect(init).toMatchObject({ method, credentials: 'same-origin' });
    expect(init.headers['X-CSRF-Token']).toBe('csrf-1');
    expect(init.headers).not.toHaveProperty('Authorization');
  });

  it('sends no CSRF token on a GET with the session', async () => {
    const fetch = stubFetch();
    credential.useSession('csrf-1');
    await apiGet('/auth/session');
    expect(fetch.mock.calls[0][1]).toEqual({ method: 'GET', headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  });

  it('never sends the CSRF token together with an API token, even one known from an earlier session', async () => {
    const fetch = stubFetch();
    credential.useSession('csrf-1');
    credential.useToken('dvdm_x');
    await apiPost('/access/tokens/mine', { a: 1 });
    const init = fetch.mock.calls[0][1];
    expect(init.headers).toEqual({ Accept: 'application/json', 'Content-Type': 'application/json', Authorization: 'Bearer dvdm_x' });
    expect(init.credentials).toBe('omit');
    expect(init.body).toBe('{"a":1}');
  });

  it('forgets the API token when switching to the session, so that the cookie is the credential', async () => {
    const fetch = stubFetch();
    credential.useToken('dvdm_x');
    credential.useSession('csrf-2');
    await apiPost('/auth/logout');
    expect(fetch.mock.calls[0][1].headers).toEqual({ Accept: 'application/json', 'X-CSRF-Token': 'csrf-2' });
    expect(credential.token()).toBeNull();
  });

  it('answers undefined for 204 No Content', async () => {
    stubFetch(() => new Response(null, { status: 204 }));
    credential.useSession('csrf-1');
    await expect(apiPost('/auth/logout')).resolves.toBeUndefined();
  });

  it('turns the JSON error shape into an ApiError with code and trace id', async () => {
    stubFetch(() => new Response('{"error":{"code":"unauthenticated","message":"no token","traceId":"t1"}}', { status: 401 }));
    const error = await apiGet('/remotes').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 401, code: 'unauthenticated', message: 'no token', traceId: 't1' });
    expect(errorMessage(error)).toBe('no token');
  });

  it('says when to try again after a 429, from Retry-After', async () => {
    stubFetch(
      () =>
        new Response('{"error":{"code":"rate_limited","message":"too many login attempts from this address; retry later","traceId":"t2"}}', {
          status: 429,
          headers: { 'Retry-After': '42' },
        }),
    );
    const error = await apiPost('/auth/login', { username: 'a', password: 'b' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 429, code: 'rate_limited', retryAfterSeconds: 42 });
    expect(errorMessage(error)).toBe('too many login attempts from this address; retry later (try again in 42 s)');
  });

  it('says "try again later" for a 429 without a readable Retry-After', () => {
    expect(errorMessage(new ApiError(429, 'rate_limited', 'slow down'))).toBe('slow down (try again later)');
  });

  it('builds the single sign-on URL with the realm encoded', () => {
    expect(oidcLoginUrl('corp')).toBe('/api/v1/auth/oidc/corp/login');
    expect(oidcLoginUrl('a/../b')).toBe('/api/v1/auth/oidc/a%2F..%2Fb/login');
  });
});
