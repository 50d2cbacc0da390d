import { Column, Entity, PrimaryColumn } from 'typeorm';

/** A manager group: a set of users that ACL entries, tokens and tenancy refer to. */
@Entity({ name: 'groups' })
export class GroupEntity {
  /** `debvisor-admin`, `debvisor-tenant-acme` … */
  @PrimaryColumn({ type: 'varchar', length: 128 })
  id!: string;

  @Column({ type: 'varchar', length: 255, default: '' })
  comment!: string;

  /** A tenant group: its members see and act on only the VMs it owns. */
  @Column({ type: 'boolean', default: false })
  tenant!: boolean;

  /** Every member must log in with a second factor. */
  @Column({ name: 'require_tfa', type: 'boolean', default: false })
  requireTfa!: boolean;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
