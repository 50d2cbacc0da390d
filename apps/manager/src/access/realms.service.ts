import { Injectable } from '@nestjs/common';
import type { RealmEntity } from './realm.entity';
import type { UserEntity } from './user.entity';

/** A user as a directory or identity provider describes it. */
export interface ExternalIdentity {
  readonly username: string;
  /** The LDAP DN or the OIDC subject. */
  readonly externalId: string;
  readonly displayName: string | null;
  readonly email: string | null;
  /** External group names, mapped to manager groups by the realm's group mappings. */
  readonly groups: readonly string[];
}

/** The result of checking a password against a directory realm. */
export type DirectoryPasswordCheck = { readonly userId: string } | 'unknown' | 'wrong';

/** Realms: their settings and secrets, directory logins and syncs (being written; see issue 3). */
@Injectable()
export class RealmsService {
  verifyDirectoryPassword(realm: RealmEntity, username: string, password: string): Promise<DirectoryPasswordCheck> {
    void realm;
    void username;
    void password;
    return Promise.reject(new Error('LDAP realms are not wired yet'));
  }

  applyExternalIdentity(realm: RealmEntity, identity: ExternalIdentity): Promise<UserEntity> {
    void realm;
    void identity;
    return Promise.reject(new Error('external identities are not wired yet'));
  }
}
