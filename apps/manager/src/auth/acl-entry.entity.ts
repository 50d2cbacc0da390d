import type { Role } from '@debvisor/permissions';
import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** A role granted to a principal on an ACL path, inherited by everything below the path. */
@Entity({ name: 'acl_entries' })
@Index('UQ_acl_entries_path_principal', ['path', 'principal'], { unique: true })
export class AclEntryEntity {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  /** `/`, `/remotes/{remote}`, `/remotes/{remote}/vms/{vmid}` … */
  @Column({ type: 'varchar', length: 1024 })
  path!: string;

  @Column({ type: 'varchar', length: 255 })
  principal!: string;

  @Column({ type: 'varchar', length: 16 })
  role!: Role;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
