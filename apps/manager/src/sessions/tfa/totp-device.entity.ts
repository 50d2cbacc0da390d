import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { UserEntity } from '../../users/user.entity';

/** A TOTP authenticator of a user. The shared secret is sealed; the last accepted step stops replays. */
@Entity({ name: 'tfa_totp_devices' })
@Index('UQ_tfa_totp_devices_user_name', ['userId', 'name'], { unique: true })
export class TotpDeviceEntity {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'user_id', type: 'varchar', length: 255 })
  userId!: string;

  @Column({ type: 'varchar', length: 64 })
  name!: string;

  @Column({ name: 'sealed_secret', type: 'text' })
  sealedSecret!: string;

  /** Enrolment is confirmed with a valid code; unconfirmed devices do not count for login. */
  @Column({ type: 'boolean', default: false })
  confirmed!: boolean;

  /** The highest time step whose code was accepted; that step and earlier ones are refused. */
  @Column({
    name: 'last_step',
    type: 'bigint',
    nullable: true,
    transformer: {
      to: (v: number | null) => v,
      from: (v: string | null) => (v === null ? null : Number(v)),
    },
  })
  lastStep!: number | null;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @ManyToOne(() => UserEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'user_id' })
  user?: object;
}
