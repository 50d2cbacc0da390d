import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * Failed password logins of one account from one source address: after
 * DEBVISOR_LOGIN_FAILURES_BEFORE_LOCK of them that source waits before its next try, twice as long
 * after each further failure (up to DEBVISOR_LOGIN_LOCK_MINUTES). Keyed on the source too, so that
 * nobody can lock an account's owner out from elsewhere. An attempt is counted before the password
 * is checked; a successful login removes the row.
 */
@Entity({ name: 'login_throttles' })
export class LoginThrottleEntity {
  /** `<realm>:<user name>` as the login named it, normalised (case, Unicode form, spaces). */
  @PrimaryColumn({ type: 'varchar', length: 600 })
  account!: string;

  @PrimaryColumn({ type: 'varchar', length: 64 })
  source!: string;

  @Column({ type: 'integer' })
  failures!: number;

  @Column({ name: 'blocked_until', type: 'timestamptz', nullable: true })
  blockedUntil!: Date | null;

  @Column({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
