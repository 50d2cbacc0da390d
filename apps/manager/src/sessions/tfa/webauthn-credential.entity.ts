import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { UserEntity } from '../../users/user.entity';

/**
 * A WebAuthn authenticator (security key, platform authenticator) of a user. Only its public key is
 * stored; the signature counter, when the authenticator keeps one, must increase with every use.
 */
@Entity({ name: 'tfa_webauthn_credentials' })
@Index('UQ_tfa_webauthn_credentials_user_name', ['userId', 'name'], { unique: true })
@Index('UQ_tfa_webauthn_credentials_credential_id', ['credentialId'], { unique: true })
export class WebauthnCredentialEntity {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'user_id', type: 'varchar', length: 255 })
  userId!: string;

  @Column({ type: 'varchar', length: 64 })
  name!: string;

  /** The authenticator's credential id, base64url. */
  @Column({ name: 'credential_id', type: 'varchar', length: 1366 })
  credentialId!: string;

  /** The COSE public key, base64url. */
  @Column({ name: 'public_key', type: 'text' })
  publicKey!: string;

  /** The highest signature counter seen (0 for authenticators without one). */
  @Column({
    type: 'bigint',
    default: 0,
    transformer: { to: (v: number) => v, from: (v: string) => Number(v) },
  })
  counter!: number;

  @Column({ type: 'text', array: true })
  transports!: string[];

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true })
  lastUsedAt!: Date | null;

  @ManyToOne(() => UserEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'user_id' })
  user?: object;
}
