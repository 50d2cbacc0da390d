import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

export type TokenOwnerType = 'user' | 'group';

/**
 * An API token `dvdm_<id>_<secret>`: stored only as the SHA-256 of its secret, found by its id. It
 * acts for a user (`alice@local!ci`) or a group (automation acting for the group).
 */
@Entity({ name: 'api_tokens' })
@Index('UQ_api_tokens_owner_name', ['ownerType', 'principal', 'name'], { unique: true })
export class ApiTokenEntity {
  /** 16 hex digits, the public part of the token. */
  @PrimaryColumn({ type: 'varchar', length: 16 })
  id!: string;

  @Column({ name: 'owner_type', type: 'varchar', length: 8, default: 'user' })
  ownerType!: TokenOwnerType;

  /** The owner: a user id or a group id. */
  @Column({ type: 'varchar', length: 255 })
  principal!: string;

  @Column({ type: 'varchar', length: 64 })
  name!: string;

  @Column({ type: 'varchar', length: 255, default: '' })
  comment!: string;

  /**
   * Privilege separation: the token holds only what both its owner and its own ACL entries grant.
   * Unlimited tokens hold exactly their owner's rights. Never more than the owner's.
   */
  @Column({ type: 'boolean', default: false })
  limited!: boolean;

  /** Hex SHA-256 of the secret part. */
  @Column({ name: 'secret_hash', type: 'varchar', length: 64 })
  secretHash!: string;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true })
  lastUsedAt!: Date | null;

  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt!: Date | null;

  @Column({ name: 'revoked_at', type: 'timestamptz', nullable: true })
  revokedAt!: Date | null;
}
