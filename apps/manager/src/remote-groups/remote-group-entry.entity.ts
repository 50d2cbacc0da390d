import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { RemoteCredentialEntity } from '../remotes/remote-credential.entity';
import { RemoteEntity } from '../remotes/remote.entity';
import { RemoteGroupEntity } from './remote-group.entity';

/** The credential the manager uses when a member of the group acts on the remote. */
@Entity({ name: 'remote_group_entries' })
@Index('IDX_remote_group_entries_remote', ['remoteId'])
export class RemoteGroupEntryEntity {
  @PrimaryColumn({ name: 'group_id', type: 'varchar', length: 63 })
  groupId!: string;

  @PrimaryColumn({ name: 'remote_id', type: 'varchar', length: 63 })
  remoteId!: string;

  @Column({ name: 'credential_id', type: 'uuid' })
  credentialId!: string;

  @ManyToOne(() => RemoteGroupEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'group_id' })
  group?: object;

  @ManyToOne(() => RemoteEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'remote_id' })
  remote?: object;

  @ManyToOne(() => RemoteCredentialEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'credential_id' })
  credential?: object;
}
