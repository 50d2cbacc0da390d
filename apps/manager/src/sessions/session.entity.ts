import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { UserEntity } from '../users/user.entity';

import type { SessionStage } from '../authz/caller';

export type { SessionStage };

/**
 * A login session. The cookie holds a random secret; only its SHA-256 is stored. A session in stage
 * `tfa` is the server's half-authenticated state between the password and the second factor; a
 * session in stage `setup` may only enrol the second factor its user is required to have. The CSRF
 * token of a session is derived from its id with the manager's key (see session-secrets.ts).
 */
@Entity({ name: 'sessions' })
@Index('IDX_sessions_user', ['userId'])
export class SessionEntity {
  /** Hex SHA-256 of the cookie secret. */
  @PrimaryColumn({ type: 'varchar', length: 64 })
  id!: string;

  @Column({ name: 'user_id', type: 'varchar', length: 255 })
  userId!: string;

  @Column({ type: 'varchar', length: 8 })
  stage!: SessionStage;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'last_seen_at', type: 'timestamptz' })
  lastSeenAt!: Date;

  /** The absolute end, whatever the activity. */
  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt!: Date;

  @Column({ name: 'source_ip', type: 'varchar', length: 64, nullable: true })
  sourceIp!: string | null;

  /** The WebAuthn challenge this session asked for (base64url), single use; null when none is open. */
  @Column({ name: 'webauthn_challenge', type: 'varchar', length: 128, nullable: true })
  webauthnChallenge?: string | null;

  @Column({ name: 'webauthn_challenge_expires_at', type: 'timestamptz', nullable: true })
  webauthnChallengeExpiresAt?: Date | null;

  /** For an enrolment: the name the new credential gets when the challenge is answered. */
  @Column({ name: 'webauthn_pending_name', type: 'varchar', length: 64, nullable: true })
  webauthnPendingName?: string | null;

  @ManyToOne(() => UserEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'user_id' })
  user?: object;
}
