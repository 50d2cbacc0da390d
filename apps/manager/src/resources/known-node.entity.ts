import { Column, Entity, PrimaryColumn } from 'typeorm';
import type { NodeResource, NodeState, VmResource } from './resources.dto';

/**
 * A node the resource cache has seen on a remote (owned by resources/). It outlives the node's
 * lease in the cluster's registry and the manager's restarts; only an operator forgetting the node,
 * or removing its remote, deletes it. Written when the node is new or its state or VMs change.
 */
@Entity({ name: 'known_nodes' })
export class KnownNodeEntity {
  @PrimaryColumn({ name: 'remote_id', type: 'varchar', length: 63 })
  remoteId!: string;

  @PrimaryColumn({ name: 'node_id', type: 'varchar', length: 253 })
  nodeId!: string;

  @Column({ type: 'varchar', length: 16 })
  state!: NodeState;

  @Column({ type: 'timestamptz' })
  since!: Date;

  @Column({ name: 'last_seen_at', type: 'timestamptz', nullable: true })
  lastSeenAt!: Date | null;

  /** The node as last listed. */
  @Column({ type: 'jsonb' })
  node!: NodeResource;

  /** Its VMs as last listed. */
  @Column({ type: 'jsonb' })
  vms!: VmResource[];
}
