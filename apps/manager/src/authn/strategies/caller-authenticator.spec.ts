import { strictMock } from '@debvisor/testing/strict-mock';
import type { Request, Response } from 'express';
import passport from 'passport';
import { describe, expect, it, vi } from 'vitest';
import { DomainError } from '../../common/domain-error';
import { ErrorCode } from '../../common/error-code';
import type { AuthService, AuthenticatedCaller, PresentedCredentials } from '../auth.service';
import { API_TOKEN_STRATEGY, ApiTokenStrategy } from './api-token.strategy';
import { CallerAuthenticator } from './caller-authenticator';
import { SESSION_COOKIE_STRATEGY, SessionCookieStrategy } from './session-cookie.strategy';

const CALLER = { principal: 'alice@local', kind: 'session' } as AuthenticatedCaller;
const SECRET = 'a'.repeat(43);

function setup(answer: (presented: PresentedCredentials) => Promise<AuthenticatedCaller>) {
  const seen: PresentedCredentials[] = [];
  const auth = strictMock<AuthService>('AuthService', {
    authenticate: (presented) => (seen.push(presented), answer(presented)),
  });
  const authenticator = new CallerAuthenticator(
    new ApiTokenStrategy(auth),
    new SessionCookieStrategy(auth),
  );
  return { authenticator, seen };
}

function request(method: string, headers: Record<string, string>): Request {
  return { method, headers, url: '/api/v1/remotes' } as unknown as Request;
}

async function run(
  authenticator: CallerAuthenticator,
  req: Request,
): Promise<{ method: string; caller: AuthenticatedCaller }> {
  const strategy = authenticator.strategyFor(req);
  return {
    method: strategy.method,
    caller: await authenticator.authenticate(strategy, req, {} as Response),
  };
}

describe('CallerAuthenticator (passport strategies)', () => {
  it('judges a request with an Authorization header by the API token strategy alone, ignoring a cookie beside it', async () => {
    const { authenticator, seen } = setup(async () => CALLER);
    const req = request('POST', {
      authorization: 'Bearer dvdm_x',
      cookie: `debvisor_session=${SECRET}`,
    });
    await expect(run(authenticator, req)).resolves.toEqual({ method: 'token', caller: CALLER });
    expect(seen).toEqual([{ authorization: 'Bearer dvdm_x', safeMethod: true }]);
  });

  it('judges any other request by its session cookie, with the CSRF token for a write', async () => {
    const { authenticator, seen } = setup(async () => CALLER);
    await run(
      authenticator,
      request('POST', { cookie: `debvisor_session=${SECRET}`, 'x-csrf-token': 'csrf-1' }),
    );
    await run(authenticator, request('GET', { cookie: `debvisor_session=${SECRET}` }));
    await run(authenticator, request('GET', {}));
    expect(seen).toEqual([
      { sessionSecret: SECRET, csrfToken: 'csrf-1', safeMethod: false },
      { sessionSecret: SECRET, csrfToken: undefined, safeMethod: true },
      { sessionSecret: undefined, csrfToken: undefined, safeMethod: true },
    ]);
  });

  it("answers the strategy's refusal as it was thrown, never another strategy's verdict", async () => {
    const refusal = new DomainError(
      ErrorCode.Unauthenticated,
      'invalid, expired or revoked API token',
    );
    const { authenticator, seen } = setup(() => Promise.reject(refusal));
    const req = request('GET', {
      authorization: 'Bearer dvdm_bad',
      cookie: `debvisor_session=${SECRET}`,
    });
    await expect(run(authenticator, req)).rejects.toBe(refusal);
    expect(seen).toHaveLength(1);
  });

  it('gives each of two concurrent requests its own caller, whichever finishes first', async () => {
    const gates = new Map<string, (caller: AuthenticatedCaller) => void>();
    const { authenticator } = setup(
      (presented) =>
        new Promise((resolve) => gates.set(presented.authorization ?? 'cookie', resolve)),
    );
    const alice = run(authenticator, request('GET', { authorization: 'Bearer dvdm_alice' }));
    const bob = run(authenticator, request('GET', { authorization: 'Bearer dvdm_bob' }));
    await vi.waitFor(() => expect(gates.size).toBe(2));
    gates.get('Bearer dvdm_alice')!({ principal: 'alice@local' } as AuthenticatedCaller);
    gates.get('Bearer dvdm_bob')!({ principal: 'bob@local' } as AuthenticatedCaller);
    // Bob first: had the two requests shared passport's actions, Bob would hold Alice's caller.
    expect((await bob).caller.principal).toBe('bob@local');
    expect((await alice).caller.principal).toBe('alice@local');
  });

  it("registers nothing in passport's global registry (several managers may share a process)", () => {
    setup(async () => CALLER);
    const registry = passport as unknown as { _strategy(name: string): unknown };
    expect(registry._strategy(API_TOKEN_STRATEGY)).toBeUndefined();
    expect(registry._strategy(SESSION_COOKIE_STRATEGY)).toBeUndefined();
  });
});
