import type { Role } from '@debvisor/permissions';
import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

export const PRINCIPAL_TYPES = ['user', 'group', 'token'] as const;
export type PrincipalType = (typeof PRINCIPAL_TYPES)[number];

/** A role granted to a principal on an ACL path, inherited by everything below the path when `propagate`. */
@Entity({ name: 'acl_entries' })
@Index('UQ_acl_entries_path_principal', ['path', 'principalType', 'principal'], { unique: true })
@Index('IDX_acl_entries_principal', ['principalType', 'principal'])
export class AclEntryEntity {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  /** `/`, `/remotes/{remote}`, `/groups/{group}`, `/remotes/{remote}/vms/{vmid}` … */
  @Column({ type: 'varchar', length: 1024 })
  path!: string;

  @Column({ name: 'principal_type', type: 'varchar', length: 8, default: 'user' })
  principalType!: PrincipalType;

  /** A user id (`alice@local`), a group id, or a token id (16 hex digits). */
  @Column({ type: 'varchar', length: 255 })
  principal!: string;

  @Column({ type: 'varchar', length: 16 })
  role!: Role;

  /** The role also holds on every path below `path`. */
  @Column({ type: 'boolean', default: true })
  propagate!: boolean;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
