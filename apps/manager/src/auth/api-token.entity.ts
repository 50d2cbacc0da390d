import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * An API token `dvdm_<id>_<secret>`: stored only as the SHA-256 of its secret, found by its id.
 */
@Entity({ name: 'api_tokens' })
export class ApiTokenEntity {
  /** 16 hex digits, the public part of the token. */
  @PrimaryColumn({ type: 'varchar', length: 16 })
  id!: string;

  /** Who the token acts as (`root@local`, later `user@realm` or a group). */
  @Column({ type: 'varchar', length: 255 })
  principal!: string;

  @Column({ type: 'varchar', length: 64 })
  name!: string;

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
