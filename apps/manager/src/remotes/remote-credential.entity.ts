import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { RemoteEntity } from './remote.entity';

/** An agent API key of a remote. The key itself is only stored sealed (AES-256-GCM). */
@Entity({ name: 'remote_credentials' })
@Index('UQ_remote_credentials_remote_name', ['remoteId', 'name'], { unique: true })
export class RemoteCredentialEntity {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'remote_id', type: 'varchar', length: 63 })
  remoteId!: string;

  @ManyToOne(() => RemoteEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'remote_id' })
  remote?: RemoteEntity;

  @Column({ type: 'varchar', length: 64 })
  name!: string;

  /** The public id part of the key (`dvk_<keyId>_…`), to recognise it in the cluster's key list. */
  @Column({ name: 'key_id', type: 'varchar', length: 16 })
  keyId!: string;

  /** `v1.<iv>.<tag>.<ciphertext>`, bound to this row's remote id and name. */
  @Column({ name: 'sealed_key', type: 'text' })
  sealedKey!: string;

  /**
   * What the key may do on the cluster (`service:resource:action`, `service:*`, `*`), as the agents
   * last reported it; null until first seen. The manager never acts beyond it.
   */
  @Column({ type: 'text', array: true, nullable: true })
  permissions!: string[] | null;

  /** Order of preference: the manager acts with the first credential. */
  @Column({ type: 'integer' })
  position!: number;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
