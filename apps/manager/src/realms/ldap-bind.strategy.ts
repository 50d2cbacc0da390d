import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import passport from 'passport';
import { Strategy } from 'passport-custom';
import { usernameSchema } from '../common/principal';
import { LdapDirectoryRepository, type DirectoryUser } from './ldap-directory.repository';
import type { LdapRealmSettings } from './ldap-settings';

export const LDAP_BIND_STRATEGY = 'ldap-bind';

/** What a password login to an LDAP realm presents (the `body` of the request the strategy judges). */
export interface LdapBindAttempt {
  readonly settings: LdapRealmSettings;
  /** The service account's password, to look the user up. */
  readonly bindPassword: string | null;
  /** The name as the login gave it. */
  readonly username: string;
  readonly password: string;
  /** The DN the user had at its last login: tried first, so that a good password costs one bind. */
  readonly knownDn: string | null;
}

/** The DN the password bound as (with the directory's entry when it was looked up), or why not. */
export type LdapBindResult =
  { readonly dn: string; readonly entry: DirectoryUser | null } | 'unknown' | 'wrong';

/**
 * Authenticates a user name and password by binding to the realm's directory as that user: the
 * known DN first, else the DN the service account finds for the name (one bind per attempt when
 * that is the DN just refused). A directory that cannot be used rejects with realm_unavailable.
 * Run through passport (bind()) on an Authenticator of its own, never registered globally.
 */
@Injectable()
export class LdapBindStrategy extends PassportStrategy(Strategy, LDAP_BIND_STRATEGY) {
  constructor(private readonly ldap: LdapDirectoryRepository) {
    super();
  }

  /** One login's bind, through passport. */
  bind(attempt: LdapBindAttempt): Promise<LdapBindResult> {
    return new Promise((resolve, reject) => {
      // passport binds its actions onto the strategy object it is given: one object per attempt.
      const middleware = new passport.Authenticator().authenticate(
        Object.create(this) as LdapBindStrategy,
        { session: false },
        (error: unknown, result: LdapBindResult | false) => {
          if (error) reject(error instanceof Error ? error : new Error(String(error)));
          else resolve(result || 'wrong');
        },
      ) as (req: object, res: object, next: (error?: unknown) => void) => void;
      middleware({ method: 'POST', headers: {}, body: attempt }, {}, reject);
    });
  }

  async validate(request: { body: LdapBindAttempt }): Promise<LdapBindResult> {
    const { settings, bindPassword, username, password, knownDn } = request.body;
    if (knownDn !== null && (await this.ldap.bindAsUser(settings, knownDn, password)))
      return { dn: knownDn, entry: null };
    const entry = await this.ldap.findUser(settings, bindPassword, username);
    if (!entry || !usernameSchema.safeParse(entry.username).success) return 'unknown';
    // The DN the bind just refused: the password is wrong (one bind per attempt, not two).
    if (entry.dn === knownDn) return 'wrong';
    if (!(await this.ldap.bindAsUser(settings, entry.dn, password))) return 'wrong';
    return { dn: entry.dn, entry };
  }

  getPassportInstance() {
    return new passport.Authenticator();
  }
}
