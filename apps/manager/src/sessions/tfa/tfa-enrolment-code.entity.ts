import { Column, Entity, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { UserEntity } from '../../users/user.entity';

/**
 * The one-time code an administrator issued for a user who must use a second factor and has none:
 * with DEBVISOR_TFA_ENROLMENT=admin-approval (the default) it, not the password alone, lets that
 * user enrol. One per user (a new one replaces it), stored only as its SHA-256, spent by its use.
 */
@Entity({ name: 'tfa_enrolment_codes' })
export class TfaEnrolmentCodeEntity {
  @PrimaryColumn({ name: 'user_id', type: 'varchar', length: 255 })
  userId!: string;

  @Column({ name: 'code_hash', type: 'varchar', length: 64 })
  codeHash!: string;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt!: Date;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @ManyToOne(() => UserEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'user_id' })
  user?: object;
}
