import { Column, Entity, PrimaryColumn } from 'typeorm';

/** One DebVisor cluster the manager federates. */
@Entity({ name: 'remotes' })
export class RemoteEntity {
  @PrimaryColumn({ type: 'varchar', length: 63 })
  id!: string;

  @Column({ type: 'varchar', length: 500, default: '' })
  description!: string;

  /** Agent endpoints (host:port), tried in this order. */
  @Column({ type: 'jsonb' })
  endpoints!: string[];

  /**
   * The cluster CA, the trust anchor for its agents' certificates. Null while only a fingerprint is
   * pinned and no agent has been reached yet.
   */
  @Column({ name: 'ca_cert_pem', type: 'text', nullable: true })
  caCertPem!: string | null;

  /** SHA-256 of the cluster CA (upper-case hex pairs with colons): given as a pin, or of caCertPem. */
  @Column({ name: 'ca_fingerprint', type: 'varchar', length: 95 })
  caFingerprint!: string;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
