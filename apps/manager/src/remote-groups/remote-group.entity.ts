import { Column, Entity, PrimaryColumn } from 'typeorm';

/** A named set of (remote, credential) entries; ACL entries on `/groups/{id}` act through it. */
@Entity({ name: 'remote_groups' })
export class RemoteGroupEntity {
  @PrimaryColumn({ type: 'varchar', length: 63 })
  id!: string;

  @Column({ type: 'varchar', length: 255, default: '' })
  comment!: string;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
