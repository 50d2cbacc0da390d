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

type Params = Record<string, string | undefined>;
type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

function withQuery(path: string, params?: Params): string {
  const query = params
    ? new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== '')).toString()
    : '';
  return `/api/v1${path}${query ? `?${query}` : ''}`;
}

/** Retry-After as seconds (a number of seconds or an HTTP date); undefined when absent or unreadable. */
function retryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(1, Math.ceil((date - Date.now()) / 1000));
}

async function call<T>(method: Method, url: string, body?: unknown): Promise<T> {
  const token = credential.token();
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  else if (method !== 'GET' && csrfToken) headers[CSRF_HEADER] = csrfToken;
  const response = await fetch(url, {
    method,
    headers,
    credentials: token ? 'omit' : 'same-origin',
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const parsed = response.status === 204 ? undefined : ((await response.json().catch(() => undefined)) as unknown);
  if (!response.ok) {
    const error = (parsed as Partial<ApiErrorBody> | undefined)?.error;
    throw new ApiError(
      response.status,
      error?.code ?? 'http_error',
      error?.message ?? `HTTP ${response.status}`,
      error?.traceId,
      response.status === 429 ? retryAfter(response.headers.get('Retry-After')) : undefined,
    );
  }
  return parsed as T;
}

export function apiGet<T>(path: string, params?: Params): Promise<T> {
  return call<T>('GET', withQuery(path, params));
}

export function apiPost<T>(path: string, body?: unknown, params?: Params): Promise<T> {
  return call<T>('POST', withQuery(path, params), body);
}

export function apiPut<T>(path: string, body?: unknown, params?: Params): Promise<T> {
  return call<T>('PUT', withQuery(path, params), body);
}

export function apiDelete<T = void>(path: string, body?: unknown, params?: Params): Promise<T> {
  return call<T>('DELETE', withQuery(path, params), body);
}

/** Where the browser goes to log in through an OpenID Connect realm (a full-page navigation, not a fetch). */
export function oidcLoginUrl(realm: string): string {
  return withQuery(`/auth/oidc/${encodeURIComponent(realm)}/login`);
}

/** What to show the user for a failed request: the server's message, and when to try again after a 429. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 429) return `${error.message} (${error.retryAfterSeconds ? `try again in ${error.retryAfterSeconds} s` : 'try again later'})`;
    return error.message;
  }
  if (error instanceof TypeError) return 'cannot reach the manager; check the connection and try again';
  return error instanceof Error ? error.message : String(error);
}
