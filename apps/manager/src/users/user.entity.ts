import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';

/** A user of a realm: `name@realm`. Directory users are created and updated by the realm's sync or at login. */
@Entity({ name: 'users' })
@Index('IDX_users_realm', ['realmId'])
export class UserEntity {
  /** `alice@local`, `bob@corp`. */
  @PrimaryColumn({ type: 'varchar', length: 255 })
  id!: string;

  @Column({ name: 'realm_id', type: 'varchar', length: 32 })
  realmId!: string;

  @Column({ type: 'varchar', length: 200 })
  username!: string;

  @Column({ name: 'display_name', type: 'varchar', length: 255, nullable: true })
  displayName!: string | null;

  @Column({ type: 'varchar', length: 255, nullable: true })
  email!: string | null;

  @Column({ type: 'boolean', default: true })
  enabled!: boolean;

  /** argon2id (PHC string), local realm only. */
  @Column({ name: 'password_hash', type: 'text', nullable: true })
  passwordHash!: string | null;

  @Column({ name: 'password_changed_at', type: 'timestamptz', nullable: true })
  passwordChangedAt!: Date | null;

  /** The directory DN (LDAP) or the subject (OIDC) this user was last seen as. */
  @Column({ name: 'external_id', type: 'text', nullable: true })
  externalId!: string | null;

  /** This user must log in with a second factor (besides realm and group rules). */
  @Column({ name: 'require_tfa', type: 'boolean', default: false })
  requireTfa!: boolean;

  /** Consecutive failed password logins, and until when the account refuses passwords. */
  @Column({ name: 'failed_logins', type: 'integer', default: 0 })
  failedLogins!: number;

  @Column({ name: 'locked_until', type: 'timestamptz', nullable: true })
  lockedUntil!: Date | null;

  /** TOTP is refused after repeated wrong codes, until a recovery code is used or an admin unlocks it. */
  @Column({ name: 'totp_locked', type: 'boolean', default: false })
  totpLocked!: boolean;

  /** Consecutive failed second-factor attempts, and until when the second factor refuses everything. */
  @Column({ name: 'tfa_failures', type: 'integer', default: 0 })
  tfaFailures!: number;

  @Column({ name: 'tfa_locked_until', type: 'timestamptz', nullable: true })
  tfaLockedUntil!: Date | null;

  /** Sessions created before this instant are void ("log out everywhere", disabling, password change). */
  @Column({ name: 'sessions_valid_after', type: 'timestamptz', nullable: true })
  sessionsValidAfter!: Date | null;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  /** When the realm's directory last listed this user (null for local users). */
  @Column({ name: 'synced_at', type: 'timestamptz', nullable: true })
  syncedAt!: Date | null;

  // Named, not imported: realms/ (the directory sync) imports users/, so users/ does not import
  // realms/ back. TypeORM finds RealmEntity by name in the entity list (src/entities.ts).
  @ManyToOne('RealmEntity', { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'realm_id' })
  realm?: object;
}

/** A new user as it is stored: the given fields, every counter and lock at rest. */
export function newUser(
  fields: Pick<UserEntity, 'id' | 'realmId' | 'username' | 'createdAt'> &
    Partial<
      Pick<
        UserEntity,
        'displayName' | 'email' | 'enabled' | 'passwordHash' | 'passwordChangedAt' | 'requireTfa'
      >
    >,
): UserEntity {
  return {
    displayName: null,
    email: null,
    enabled: true,
    passwordHash: null,
    passwordChangedAt: null,
    externalId: null,
    requireTfa: false,
    failedLogins: 0,
    lockedUntil: null,
    totpLocked: false,
    tfaFailures: 0,
    tfaLockedUntil: null,
    sessionsValidAfter: null,
    syncedAt: null,
    ...fields,
  };
}
