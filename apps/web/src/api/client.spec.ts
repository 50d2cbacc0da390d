import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, apiGet, credential } from './client';

describe('API client', () => {
  beforeEach(() => {
    const store = new Map<string, string>();
    vi.stubGlobal('sessionStorage', {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => store.set(k, v),
      removeItem: (k: string) => store.delete(k),
    });
  });
  afterEach(() => vi.unstubAllGlobals());

  it('sends the stored token and drops empty query parameters', async () => {
    const fetch = vi.fn(async () => new Response('{"items":[]}', { status: 200 }));
    vi.stubGlobal('fetch', fetch);
    credential.set('dvdm_x');
    await apiGet('/resources', { remote: 'dc-east', type: '', name: undefined });
    expect(fetch).toHaveBeenCalledWith('/api/v1/resources?remote=dc-east', {
      method: 'GET',
      headers: { Accept: 'application/json', Authorization: 'Bearer dvdm_x' },
    });
  });

  it('turns the JSON error shape into an ApiError with code and trace id', async () => {
    vi.stubGlobal('fetch', async () =>
      new Response('{"error":{"code":"unauthenticated","message":"no token","traceId":"t1"}}', { status: 401 }),
    );
    const error = await apiGet('/remotes').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 401, code: 'unauthenticated', message: 'no token', traceId: 't1' });
  });
});
