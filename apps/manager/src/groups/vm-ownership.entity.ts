import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { GroupEntity } from './group.entity';

/** Which tenant group owns a VM: its members see and act on it, other tenants cannot learn it exists. */
@Entity({ name: 'vm_ownership' })
@Index('IDX_vm_ownership_group', ['tenantGroup'])
export class VmOwnershipEntity {
  @PrimaryColumn({ name: 'vm_uuid', type: 'uuid' })
  vmUuid!: string;

  @Column({ name: 'tenant_group', type: 'varchar', length: 128 })
  tenantGroup!: string;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @ManyToOne(() => GroupEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'tenant_group' })
  group?: object;
}
