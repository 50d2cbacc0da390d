import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, In } from 'typeorm';
import type { PendingAction, SiteRoles } from './dr-state';
import { ReplicationPairEntity, type PairState } from './replication-pair.entity';
import { VmReplicationEntity } from './vm-replication.entity';

/** The replication feature's two tables (it owns both): pool pairs and mirrored VMs. */
@Injectable()
export class ReplicationRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  private get pairs() {
    return this.dataSource.getRepository(ReplicationPairEntity);
  }

  private get vms() {
    return this.dataSource.getRepository(VmReplicationEntity);
  }

  // --- pairs -----------------------------------------------------------------------------------

  listPairs(): Promise<ReplicationPairEntity[]> {
    return this.pairs.find({ order: { createdAt: 'ASC' } });
  }

  getPair(id: string): Promise<ReplicationPairEntity | null> {
    return this.pairs.findOneBy({ id });
  }

  getPairByTask(taskId: string): Promise<ReplicationPairEntity | null> {
    return this.pairs.findOneBy({ taskId });
  }

  /** The pair of these two pools, whichever side was named A. */
  async findPair(
    remoteA: string,
    poolA: string,
    remoteB: string,
    poolB: string,
  ): Promise<ReplicationPairEntity | null> {
    return (
      (await this.pairs.findOneBy({ remoteA, poolA, remoteB, poolB })) ??
      (await this.pairs.findOneBy({
        remoteA: remoteB,
        poolA: poolB,
        remoteB: remoteA,
        poolB: poolA,
      }))
    );
  }

  /** The paired pairs joining two remotes (either way round). */
  pairsBetween(one: string, two: string): Promise<ReplicationPairEntity[]> {
    return this.pairs.find({
      where: [
        { remoteA: one, remoteB: two, state: 'paired' },
        { remoteA: two, remoteB: one, state: 'paired' },
      ],
      order: { createdAt: 'ASC' },
    });
  }

  async insertPair(pair: ReplicationPairEntity): Promise<void> {
    await this.pairs.insert(pair);
  }

  async setPairState(
    id: string,
    state: PairState,
    error: string | null,
    at: Date,
    taskId?: string,
  ): Promise<void> {
    await this.pairs.update({ id }, { state, error, updatedAt: at, ...(taskId ? { taskId } : {}) });
  }

  async deletePair(id: string): Promise<void> {
    await this.pairs.delete({ id });
  }

  /** How many VMs mirror through each pair. */
  async vmCounts(): Promise<Map<string, number>> {
    const rows: { pair_id: string; count: string }[] = await this.vms
      .createQueryBuilder('v')
      .select('v.pair_id', 'pair_id')
      .addSelect('COUNT(*)', 'count')
      .groupBy('v.pair_id')
      .getRawMany();
    return new Map(rows.map((row) => [row.pair_id, Number(row.count)]));
  }

  // --- mirrored VMs ----------------------------------------------------------------------------

  getVm(vmId: string): Promise<VmReplicationEntity | null> {
    return this.vms.findOneBy({ vmId });
  }

  /** Every mirrored VM, or those of the given ids; with `remote`, those mirrored from or to it. */
  listVms(
    filter: { vmIds?: ReadonlySet<string>; remote?: string } = {},
  ): Promise<VmReplicationEntity[]> {
    if (filter.vmIds && filter.vmIds.size === 0) return Promise.resolve([]);
    const ids = filter.vmIds ? { vmId: In([...filter.vmIds]) } : {};
    const where = filter.remote
      ? [
          { ...ids, sourceRemote: filter.remote },
          { ...ids, targetRemote: filter.remote },
        ]
      : ids;
    return this.vms.find({ where, order: { vmName: 'ASC', vmId: 'ASC' } });
  }

  async insertVm(record: VmReplicationEntity): Promise<void> {
    await this.vms.insert(record);
  }

  async deleteVm(vmId: string): Promise<void> {
    await this.vms.delete({ vmId });
  }

  async setPending(vmId: string, pending: PendingAction | null): Promise<void> {
    await this.vms.update({ vmId }, { pending });
  }

  async setPhase(
    vmId: string,
    phase: VmReplicationEntity['phase'],
    disks?: VmReplicationEntity['disks'],
  ): Promise<void> {
    await this.vms.update({ vmId }, { phase, ...(disks ? { disks } : {}) });
  }

  /**
   * The DR roles after an action, with what changed them; the pending action is cleared, or set to
   * `pending` (a task that still has steps to go keeps its record naming it).
   */
  async setRoles(
    vmId: string,
    roles: SiteRoles,
    lastChange: string,
    at: Date,
    pending: PendingAction | null = null,
  ): Promise<void> {
    await this.vms.update(
      { vmId },
      {
        sourceState: roles.sourceState,
        targetState: roles.targetState,
        lastChange,
        lastChangeAt: at,
        pending,
      },
    );
  }
}
