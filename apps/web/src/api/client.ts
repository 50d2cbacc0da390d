/** The one HTTP client of the UI: adds the credential, parses the JSON error shape. */

export interface ApiErrorBody {
  error: { code: string; message: string; traceId?: string };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly traceId?: string,
  ) {
    super(message);
  }
}

const TOKEN_KEY = 'debvisor.token';

export const credential = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (token: string) => sessionStorage.setItem(TOKEN_KEY, token),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

function withQuery(path: string, params?: Record<string, string | undefined>): string {
  const query = params
    ? new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== '')).toString()
    : '';
  return `/api/v1${path}${query ? `?${query}` : ''}`;
}

async function call<T>(method: 'GET' | 'POST', url: string, body?: unknown): Promise<T> {
  const token = credential.get();
  const response = await fetch(url, {
    method,
    headers: {
      Accept: 'application/json',
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const parsed = (await response.json().catch(() => undefined)) as unknown;
  if (!response.ok) {
    const error = (parsed as Partial<ApiErrorBody> | undefined)?.error;
    throw new ApiError(response.status, error?.code ?? 'http_error', error?.message ?? `HTTP ${response.status}`, error?.traceId);
  }
  return parsed as T;
}

export function apiGet<T>(path: string, params?: Record<string, string | undefined>): Promise<T> {
  return call<T>('GET', withQuery(path, params));
}

export function apiPost<T>(path: string, body?: unknown, params?: Record<string, string | undefined>): Promise<T> {
  return call<T>('POST', withQuery(path, params), body);
}
