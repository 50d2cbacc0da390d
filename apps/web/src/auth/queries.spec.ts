import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { api, credential, unwrap } from '../api/client';
import { fetchSignedIn, holds } from './queries';

describe('signed-in state', () => {
  /** document.cookie as the browser keeps it: the manager's readable signed-in marker (its session cookie is HttpOnly). */
  let cookies: string[];
  beforeEach(() => {
    cookies = ['theme=dark', 'debvisor_signed_in=1'];
    vi.stubGlobal('document', {
      get cookie() {
        return cookies.join('; ');
      },
      set cookie(value: string) {
        const name = value.split('=')[0];
        cookies = cookies.filter((c) => !c.startsWith(`${name}=`));
        if (!/Max-Age=0/i.test(value)) cookies.push(value.split(';')[0]);
      },
    });
    const store = new Map<string, string>();
    vi.stubGlobal('sessionStorage', {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => store.set(k, v),
      removeItem: (k: string) => store.delete(k),
    });
    credential.clear();
  });
  afterEach(() => vi.unstubAllGlobals());

  it('takes the CSRF token of an existing session for later writes, and keeps only known privileges', async () => {
    const fetch = vi.fn(async (_request: Request) =>
      Response.json({
        user: 'admin@local',
        kind: 'session',
        stage: 'active',
        csrfToken: 'csrf-9',
        groups: [],
        privileges: ['remote.audit', 'no.such'],
      }),
    );
    vi.stubGlobal('fetch', fetch);
    const signedIn = await fetchSignedIn();
    expect(signedIn).toEqual({
      via: 'session',
      user: 'admin@local',
      stage: 'active',
      privileges: new Set(['remote.audit']),
    });
    expect(holds(signedIn!, 'remote.audit')).toBe(true);
    expect(holds(signedIn!, 'remote.modify')).toBe(false);

    await unwrap(api.POST('/api/v1/auth/logout'));
    expect(fetch.mock.calls[1][0].headers.get('X-CSRF-Token')).toBe('csrf-9');
  });

  it('answers null (the login page) when the manager knows no session, and drops the stale signed-in marker', async () => {
    vi.stubGlobal('fetch', async () =>
      Response.json(
        { error: { code: 'unauthenticated', message: 'no credential', traceId: 't' } },
        { status: 401 },
      ),
    );
    await expect(fetchSignedIn()).resolves.toBeNull();
    expect(cookies).toEqual(['theme=dark']);
  });

  it('does not ask for a session without the signed-in marker: a first visit causes no 401', async () => {
    cookies = ['theme=dark'];
    const fetch = vi.fn();
    vi.stubGlobal('fetch', fetch);
    await expect(fetchSignedIn()).resolves.toBeNull();
    expect(fetch).not.toHaveBeenCalled();
  });

  it('reports other failures instead of pretending nobody is logged in', async () => {
    vi.stubGlobal('fetch', async () =>
      Response.json(
        { error: { code: 'internal', message: 'boom', traceId: 't' } },
        { status: 500 },
      ),
    );
    await expect(fetchSignedIn()).rejects.toMatchObject({ status: 500, message: 'boom' });
  });

  it('does not ask the manager for a session with an API token, and shows every action (the server decides)', async () => {
    const fetch = vi.fn();
    vi.stubGlobal('fetch', fetch);
    credential.useToken('dvdm_x');
    const signedIn = await fetchSignedIn();
    expect(signedIn).toMatchObject({ via: 'token', privileges: null });
    expect(holds(signedIn!, 'remote.modify')).toBe(true);
    expect(fetch).not.toHaveBeenCalled();
  });
});
