import { Column, Entity, PrimaryColumn } from 'typeorm';

export const REALM_TYPES = ['local', 'ldap', 'openid'] as const;
export type RealmType = (typeof REALM_TYPES)[number];

/** How a directory or claim group becomes a manager group: `pattern` (`*` wildcards) → `group` (default: the same name). */
export interface GroupMapping {
  readonly pattern: string;
  readonly group?: string;
  /** Manager groups created by this mapping are tenant groups. */
  readonly tenant?: boolean;
}

/** Where users come from: the local password database, an LDAP/AD directory or an OpenID Connect provider. */
@Entity({ name: 'realms' })
export class RealmEntity {
  /** `local`, `corp`, `sso` … — the part after `@` in user ids. */
  @PrimaryColumn({ type: 'varchar', length: 32 })
  id!: string;

  @Column({ type: 'varchar', length: 16 })
  type!: RealmType;

  @Column({ type: 'varchar', length: 255, default: '' })
  comment!: string;

  /** The type's settings (LDAP or OIDC), validated by their zod schema; never a secret. */
  @Column({ type: 'jsonb', default: {} })
  settings!: Record<string, unknown>;

  /** The bind password or client secret, sealed with the state directory's key. */
  @Column({ name: 'sealed_secret', type: 'text', nullable: true })
  sealedSecret!: string | null;

  /** Every user of this realm must log in with a second factor. */
  @Column({ name: 'require_tfa', type: 'boolean', default: false })
  requireTfa!: boolean;

  @Column({ name: 'group_mappings', type: 'jsonb', default: [] })
  groupMappings!: GroupMapping[];

  /** Minutes between directory syncs (LDAP); null: only on demand. */
  @Column({ name: 'sync_interval_minutes', type: 'integer', nullable: true })
  syncIntervalMinutes!: number | null;

  @Column({ name: 'last_sync_at', type: 'timestamptz', nullable: true })
  lastSyncAt!: Date | null;

  @Column({ name: 'last_sync_error', type: 'text', nullable: true })
  lastSyncError!: string | null;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
