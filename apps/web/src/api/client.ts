import createClient from 'openapi-fetch';
import type { components, paths } from './schema';

/** The manager's API schemas (request and answer bodies) by name. */
export type Schemas = components['schemas'];

/**
 * The one HTTP client of the UI: adds the credential, parses the JSON error shape.
 *
 * The credential is either the login session (an HttpOnly cookie the page never sees, plus the
 * session's CSRF token, kept in memory only and sent as X-CSRF-Token with every write) or an API
 * token (kept in sessionStorage, sent as a Bearer token, and then no cookie goes along). Never both.
 */

export interface ApiErrorBody {
  error: { code: string; message: string; traceId?: string };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly traceId?: string,
    /** From Retry-After, for 429 answers. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const TOKEN_KEY = 'debvisor.token';
export const CSRF_HEADER = 'X-CSRF-Token';

/** The session's CSRF token: in memory only (after a reload, GET /auth/session answers it again). */
let csrfToken: string | null = null;

export const credential = {
  /** The API token signed in with, or null when the session cookie is the credential. */
  token: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  /** Sign in with an API token: every request carries it, and no cookie goes along. */
  useToken(token: string): void {
    csrfToken = null;
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  /** Use the session cookie, with its CSRF token for writes (null: none known yet). */
  useSession(token: string | null): void {
    sessionStorage.removeItem(TOKEN_KEY);
    csrfToken = token;
  },
  csrfToken: (): string | null => csrfToken,
  clear(): void {
    sessionStorage.removeItem(TOKEN_KEY);
    csrfToken = null;
  },
};

/**
 * Sends one request of the typed client with the credential: the Bearer token (no cookie), or the
 * session cookie with the CSRF token on writes.
 */
function send(request: Request): Promise<Response> {
  const token = credential.token();
  const headers = new Headers(request.headers);
  headers.set('Accept', 'application/json');
  if (token) headers.set('Authorization', `Bearer ${token}`);
  else if (request.method !== 'GET' && csrfToken) headers.set(CSRF_HEADER, csrfToken);
  return fetch(new Request(request, { headers, credentials: token ? 'omit' : 'same-origin' }));
}

/** A typed client of the manager's REST API (types generated from its OpenAPI document: `npm run gen:api`). */
export function createApiClient(baseUrl: string) {
  return createClient<paths>({ baseUrl, fetch: send });
}

/** The client every queries.ts / mutations.ts uses; components never build URLs. */
export const api = createApiClient(globalThis.location?.origin ?? 'http://localhost');

/** Retry-After as seconds (a number of seconds or an HTTP date); undefined when absent or unreadable. */
function retryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(1, Math.ceil((date - Date.now()) / 1000));
}

/**
 * The data of a typed client call, or an ApiError from the JSON error shape:
 * `unwrap(api.GET('/api/v1/remotes'))`. Its type is the documented success answer of the route (the
 * OpenAPI document documents every one); there is no type parameter to assert another by hand.
 */
export async function unwrap<
  Call extends Promise<{ data?: unknown; error?: unknown; response: Response }>,
>(call: Call): Promise<Exclude<Awaited<Call>['data'], undefined>> {
  const { data, error, response } = await call;
  if (!response.ok) {
    const body = (error as Partial<ApiErrorBody> | undefined)?.error;
    throw new ApiError(
      response.status,
      body?.code ?? 'http_error',
      body?.message ?? `HTTP ${response.status}`,
      body?.traceId,
      response.status === 429 ? retryAfter(response.headers.get('Retry-After')) : undefined,
    );
  }
  return data as Exclude<Awaited<Call>['data'], undefined>;
}

/** Query parameters without empty values (an empty search field means no filter). */
export function definedOnly<T extends Record<string, unknown>>(params: T): T {
  return Object.fromEntries(
    Object.entries(params).filter(([, v]) => v !== undefined && v !== ''),
  ) as T;
}

/** Where the browser goes to log in through an OpenID Connect realm (a full-page navigation, not a fetch). */
export function oidcLoginUrl(realm: string): string {
  return `/api/v1/auth/oidc/${encodeURIComponent(realm)}/login`;
}

/** What to show the user for a failed request: the server's message, and when to try again after a 429. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 429)
      return `${error.message} (${error.retryAfterSeconds ? `try again in ${error.retryAfterSeconds} s` : 'try again later'})`;
    return error.message;
  }
  if (error instanceof TypeError)
    return 'cannot reach the manager; check the connection and try again';
  return error instanceof Error ? error.message : String(error);
}
