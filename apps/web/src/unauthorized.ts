import { ApiError } from './api/client';
import { authKeys } from './auth/queries';

/** Dispatched on window when a page's request answers 401: the credential stopped working. */
export const UNAUTHORIZED_EVENT = 'debvisor:unauthorized';

/**
 * For the query cache: a 401 on any page's query means the session ended or the token was
 * revoked; the app returns to the login page with the reason. (The session query's own 401 is
 * the ordinary "not logged in" and is answered by fetchSignedIn.)
 */
export function reportUnauthorized(error: unknown, queryKey: readonly unknown[]): void {
  if (!(error instanceof ApiError) || error.status !== 401) return;
  if (queryKey[0] === authKeys.all[0]) return;
  window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT, { detail: error.message }));
}
