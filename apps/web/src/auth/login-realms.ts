import type { Schemas } from '../api/client';

/** A realm as GET /api/v1/auth/realms offers it to the login page. */
export type LoginRealm = Schemas['LoginRealmListDto_Output']['items'][number];

/** Realms a password logs in with (local and LDAP); the others sign in through their identity provider. */
export const passwordRealms = (realms: readonly LoginRealm[]) =>
  realms.filter((realm) => realm.type !== 'openid');
export const singleSignOnRealms = (realms: readonly LoginRealm[]) =>
  realms.filter((realm) => realm.type === 'openid');

/** How a realm reads in the choice: its id first (what `name@realm` takes), then its comment. */
export const realmLabel = (realm: LoginRealm) =>
  realm.comment ? `${realm.id} — ${realm.comment}` : realm.id;

export interface LoginTarget {
  username: string;
  /** undefined: the manager takes the realm after @ in the username, else local. */
  realm: string | undefined;
  /** The username named the realm (`alice@corp`): the choice shows it and cannot be changed. */
  fromUsername: boolean;
}

/**
 * What the password form sends. A username ending in `@<a password realm>` names its realm;
 * any other logs in whole with the chosen realm (directory names may hold `@`, e.g. e-mail
 * addresses). Without the realm list (an older manager, a failed request) the username goes as
 * typed and the manager splits it.
 */
export function loginTarget(
  username: string,
  chosen: string,
  realms: readonly LoginRealm[],
): LoginTarget {
  const ids = new Set(passwordRealms(realms).map((realm) => realm.id));
  if (ids.size === 0) return { username, realm: undefined, fromUsername: false };
  const at = username.lastIndexOf('@');
  const suffix = at > 0 ? username.slice(at + 1) : '';
  if (ids.has(suffix))
    return { username: username.slice(0, at), realm: suffix, fromUsername: true };
  return { username, realm: ids.has(chosen) ? chosen : 'local', fromUsername: false };
}
