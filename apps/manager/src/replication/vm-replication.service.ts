import type { Privilege } from '@debvisor/permissions';
import { Injectable, OnModuleInit } from '@nestjs/common';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { vmAclPath } from '../authz/acl-paths';
import { ownerPrincipal, type Caller } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MigrationEvents, type VmMovedEvent } from '../migration/migration-events';
import { RemotesService } from '../remotes/remotes.service';
import type { TaskEntity } from '../tasks/task.entity';
import { TaskSuspended } from '../tasks/task-suspended';
import { TasksService, type TaskContext } from '../tasks/tasks.service';
import { DrRecoveryService } from './dr-recovery.service';
import { DrRunnerService, MIRROR_PERMISSION, remoteAt } from './dr-runner.service';
import {
  enabledRoles,
  failover,
  migrated,
  other,
  primarySide,
  resync,
  switchover,
  type DrAction,
  type PendingAction,
  type ReplicatedDisk,
} from './dr-state';
import { ReplicationPollerService } from './replication-poller.service';
import { ReplicationStatusService, type Observation } from './replication-status.service';
import type {
  EnableReplicationBody,
  FailoverBody,
  FailoverPreview,
  ImageStatusView,
  SwitchoverBody,
  VmReplicationQuery,
  VmReplicationView,
} from './replication.dto';
import { ReplicationRepository } from './replication.repository';
import type { VmReplicationEntity } from './vm-replication.entity';

/** The task type of each DR action; all are exclusive on their VM. */
export const DR_TASKS: Readonly<Record<DrAction, string>> = {
  enable: 'vm.replication.enable',
  disable: 'vm.replication.disable',
  switchover: 'vm.replication.switchover',
  failover: 'vm.replication.failover',
  resync: 'vm.replication.resync',
};

/** The DR actions a restart does not fail: the next start settles them (DrRecoveryService). */
const RESUMABLE: ReadonlySet<DrAction> = new Set(['switchover', 'failover', 'resync']);

/**
 * Mirroring of VMs as the API offers it: enable/disable, the status of one VM (read from both
 * sites now, RPO computed here), the list of all (from the last poll), the failover preview, and
 * the DR actions queued as exclusive tasks that DrRunnerService carries out. Changes need
 * vm.replicate (vm.failover for a failover) on the VM at the remote named in the path and on the
 * VM's path at its other remote (which credential acts there).
 */
@Injectable()
export class VmReplicationService implements OnModuleInit {
  constructor(
    private readonly repository: ReplicationRepository,
    private readonly status: ReplicationStatusService,
    private readonly poller: ReplicationPollerService,
    private readonly runner: DrRunnerService,
    private readonly tasks: TasksService,
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly policy: AccessPolicy,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
    private readonly migrations: MigrationEvents,
    private readonly recovery: DrRecoveryService,
  ) {}

  onModuleInit(): void {
    this.migrations.subscribe((event) => this.followMove(event));
    const run: Record<DrAction, (context: TaskContext) => Promise<void>> = {
      enable: (context) => this.runner.enable(context),
      disable: (context) => this.runner.disable(context),
      switchover: (context) => this.runner.switchover(context),
      failover: (context) => this.runner.failover(context),
      resync: (context) => this.runner.resync(context),
    };
    for (const action of Object.keys(DR_TASKS) as DrAction[]) {
      this.tasks.registerHandler(DR_TASKS[action], {
        exclusive: true,
        // The agent calls a task makes are recorded as its owner's.
        run: (context) =>
          this.audit.runAs(ownerPrincipal(context.task.owner), () =>
            this.ending(context, () => run[action](context)),
          ),
        afterInterrupted: (task) => void this.interrupted(action, task),
        // A switchover, failover or resync left running by a restart is settled from what both sites say.
        ...(RESUMABLE.has(action)
          ? {
              resume: (context: TaskContext) =>
                this.audit.runAs(ownerPrincipal(context.task.owner), () =>
                  this.ending(context, () => this.recovery.resume(action, context)),
                ),
              suspend: () => this.runner.suspend(),
            }
          : {}),
      });
    }
  }

  // --- enable / disable ------------------------------------------------------------------------

  async enable(
    caller: Caller,
    remote: string,
    vmId: string,
    body: EnableReplicationBody,
  ): Promise<{ taskId: string }> {
    await this.remotes.get(remote);
    if (await this.repository.getVm(vmId))
      throw new DomainError(
        ErrorCode.Conflict,
        `VM ${vmId} is mirrored already; GET …/replication shows it`,
      );
    const pair = await this.pairFor(remote, body);
    const [sourcePool, targetRemote, targetPool] =
      pair.remoteA === remote
        ? [pair.poolA, pair.remoteB, pair.poolB]
        : [pair.poolB, pair.remoteA, pair.poolA];
    await this.remotes.get(targetRemote);
    const credentials = this.credentials(caller, 'vm.replicate', vmId, remote, targetRemote);
    const source = await this.remotes.connectionFor(remote, credentials[remote], MIRROR_PERMISSION);
    await this.remotes.connectionFor(targetRemote, credentials[targetRemote], MIRROR_PERMISSION);
    const vm = await this.agents.getVm(source, vmId);
    const disks: ReplicatedDisk[] = (vm.spec?.disks ?? []).map((disk) => ({
      pool: disk.pool,
      image: disk.image,
    }));
    if (disks.length === 0)
      throw new DomainError(ErrorCode.Conflict, `VM ${vmId} has no disks to mirror`);
    const elsewhere = disks.filter((disk) => disk.pool !== sourcePool);
    if (elsewhere.length > 0) {
      throw new DomainError(
        ErrorCode.Conflict,
        `pair ${pair.id} mirrors pool ${sourcePool} of ${remote}; the VM's disks ${elsewhere.map((d) => `${d.pool}/${d.image}`).join(', ')} are in other pools (all its disks are mirrored together)`,
      );
    }
    const accepted = await this.tasks.enqueue(
      {
        type: DR_TASKS.enable,
        remoteId: remote,
        vmId,
        owner: caller.display,
        credentialId: credentials[remote],
      },
      {
        prepare: async (taskId) => {
          const now = this.clock.now();
          await this.repository.insertVm({
            vmId,
            vmName: vm.spec?.name ?? vmId,
            pairId: pair.id,
            sourceRemote: remote,
            sourcePool,
            targetRemote,
            targetPool,
            ...enabledRoles(),
            phase: 'enabling',
            disks,
            spec: JSON.parse(JSON.stringify(vm.spec)) as object,
            rpoTargetSeconds: body.rpoTargetSeconds,
            scheduleInterval: body.scheduleInterval,
            pending: { action: 'enable', taskId, credentials },
            lastChange: `enabling by ${caller.display}`,
            lastChangeAt: now,
            createdAt: now,
          });
        },
      },
    );
    this.audit.note({
      taskId: accepted.taskId,
      pair: pair.id,
      targetRemote,
      disks: disks.length,
      scheduleInterval: body.scheduleInterval,
      rpoTargetSeconds: body.rpoTargetSeconds,
    });
    return accepted;
  }

  async disable(caller: Caller, remote: string, vmId: string): Promise<{ taskId: string }> {
    const record = await this.recordAt(remote, vmId);
    this.requireActive(record);
    return this.queue(caller, 'disable', 'vm.replicate', remote, record, {}, () =>
      this.repository.setPhase(vmId, 'disabling'),
    );
  }

  // --- DR actions ------------------------------------------------------------------------------

  async switchover(
    caller: Caller,
    remote: string,
    vmId: string,
    body: SwitchoverBody,
  ): Promise<{ taskId: string }> {
    const record = await this.recordAt(remote, vmId);
    this.requireActive(record);
    switchover(record, this.poller.cached(vmId)?.splitBrain ?? false); // 409 now rather than in the task
    return this.queue(caller, 'switchover', 'vm.replicate', remote, record, {
      targetNode: body.targetNode,
    });
  }

  async failover(
    caller: Caller,
    remote: string,
    vmId: string,
    body: FailoverBody,
  ): Promise<{ taskId: string }> {
    const record = await this.recordAt(remote, vmId);
    this.requireActive(record);
    failover(record);
    const accepted = await this.queue(caller, 'failover', 'vm.failover', remote, record, {
      targetNode: body.targetNode,
      declareSourceDown: body.declareSourceDown,
      reason: body.reason,
    });
    // The operator's explicit confirmation and declaration, in the audit entry of this call.
    this.audit.note({
      confirmDataLoss: true,
      declareSourceDown: body.declareSourceDown,
      ...(body.declareSourceDown
        ? { declaredDown: remoteAt(record, primarySide(record)), reason: body.reason }
        : {}),
    });
    return accepted;
  }

  async resync(caller: Caller, remote: string, vmId: string): Promise<{ taskId: string }> {
    const record = await this.recordAt(remote, vmId);
    this.requireActive(record);
    const observed = await this.status.observe(record);
    const staleIndex = other(primarySide(record)) === 'source' ? 0 : 1;
    const needs =
      observed.splitBrain ||
      observed.images.some(
        (image) =>
          image.sites[staleIndex].primary === true ||
          image.sites[staleIndex].state.includes('error'),
      );
    resync(record, needs);
    return this.queue(caller, 'resync', 'vm.replicate', remote, record, {});
  }

  async failoverPreview(remote: string, vmId: string): Promise<FailoverPreview> {
    const record = await this.recordAt(remote, vmId);
    const lost = primarySide(record);
    const observed = await this.status.observe(record);
    const from = remoteAt(record, lost);
    const to = remoteAt(record, other(lost));
    const reachable = observed.reachable[lost];
    const rpo = observed.rpoSeconds ?? null;
    return {
      vm: vmId,
      from,
      to,
      rpoSeconds: rpo,
      lastMirroredSnapshotAt: observed.lastMirroredSnapshotAt,
      sourceReachable: reachable,
      requires: { confirmDataLoss: true, declareSourceDown: !reachable },
      dataAtRisk:
        (rpo === null
          ? `neither site could say when the last snapshot was mirrored: the data at risk is unknown.`
          : `everything written to the VM's disks at ${from} in the last ${rpo} s (since ${observed.lastMirroredSnapshotAt ?? 'mirroring was enabled'}) is lost.`) +
        (reachable
          ? ` ${from} answers: its clients of the images are blocklisted (fenced) before ${to} is promoted.`
          : ` ${from} does not answer and cannot be fenced: you must declare it down — if it is in fact running, both sites will write (split brain).`),
    };
  }

  /**
   * A migration (POST …/migrate, not a DR task) moved a mirrored VM to its other site: its disks
   * changed sides with it (the source demoted, the target promoted), so the DR roles follow —
   * the new remote primary, the old one secondary. Answers what it did, for the migration's journal.
   */
  async followMove(event: VmMovedEvent): Promise<string | undefined> {
    const record = await this.repository.getVm(event.vmId);
    // A DR switchover moves the VM itself and records the roles once the images changed sides.
    if (!record || record.pending?.taskId === event.taskId) return undefined;
    const to =
      event.toRemote === record.sourceRemote
        ? 'source'
        : event.toRemote === record.targetRemote
          ? 'target'
          : undefined;
    if (!to) {
      return `replication: ${event.toRemote} is not one of the VM's mirroring sites (${record.sourceRemote}, ${record.targetRemote}); its DR state is unchanged — disable its mirroring`;
    }
    const after = migrated(record, to);
    if (!after) return undefined;
    await this.repository.setRoles(
      record.vmId,
      after,
      `${event.online ? 'live ' : ''}migration to ${event.toRemote} (task ${event.taskId})`,
      this.clock.now(),
      record.pending,
    );
    return `replication: DR state ${event.toRemote} primary, ${event.fromRemote} secondary (the mirrored disks changed sides with the VM)`;
  }

  // --- reading ---------------------------------------------------------------------------------

  /** One VM's replication, read from both sites now. */
  async get(remote: string, vmId: string): Promise<VmReplicationView> {
    const record = await this.recordAt(remote, vmId);
    const observed = await this.status.observe(record);
    this.poller.remember(vmId, observed);
    return view(record, observed, true);
  }

  /** Every mirrored VM the caller may see (its VMs only, for a tenant), from the last poll. */
  async list(caller: Caller, query: VmReplicationQuery): Promise<{ items: VmReplicationView[] }> {
    const records = await this.repository.listVms({ remote: query.remote });
    // vm.audit on the VM at either of its remotes (a tenant's grants hold on its own VMs only); no I/O per item.
    const path = (remote: string, vm: string) => vmAclPath(remote, vm);
    const visible = records.filter(
      (r) =>
        this.policy.holds(caller, 'vm.audit', path(r.sourceRemote, r.vmId)) ||
        this.policy.holds(caller, 'vm.audit', path(r.targetRemote, r.vmId)),
    );
    const now = this.clock.now();
    return {
      items: visible.map((record) => view(record, this.poller.cached(record.vmId), false, now)),
    };
  }

  // --- helpers ---------------------------------------------------------------------------------

  private async queue(
    caller: Caller,
    action: DrAction,
    privilege: Privilege,
    remote: string,
    record: VmReplicationEntity,
    options: Omit<PendingAction, 'action' | 'taskId' | 'credentials'>,
    prepare?: () => Promise<void>,
  ): Promise<{ taskId: string }> {
    const otherRemote = remote === record.sourceRemote ? record.targetRemote : record.sourceRemote;
    const credentials = this.credentials(caller, privilege, record.vmId, remote, otherRemote);
    const accepted = await this.tasks.enqueue(
      {
        type: DR_TASKS[action],
        remoteId: remote,
        vmId: record.vmId,
        owner: caller.display,
        credentialId: credentials[remote],
      },
      {
        prepare: async (taskId) => {
          await prepare?.();
          await this.repository.setPending(record.vmId, {
            action,
            taskId,
            credentials,
            ...options,
          });
        },
      },
    );
    this.audit.note({
      taskId: accepted.taskId,
      from: remoteAt(record, primarySide(record)),
      to: remoteAt(record, other(primarySide(record))),
    });
    return accepted;
  }

  /**
   * The credential to act with at each remote: the privilege on the VM's path there (a tenant's
   * grant holds on its VM at any remote); 403 when the caller lacks it at the other remote.
   */
  private credentials(
    caller: Caller,
    privilege: Privilege,
    vmId: string,
    remote: string,
    otherRemote: string,
  ): Record<string, string | null> {
    const path = (at: string) => vmAclPath(at, vmId);
    return {
      [remote]: this.policy.credentialFor(caller, privilege, path(remote), remote),
      [otherRemote]: this.policy.credentialFor(caller, privilege, path(otherRemote), otherRemote),
    };
  }

  /** The VM's record, named at either of its remotes; 404 otherwise. */
  private async recordAt(remote: string, vmId: string): Promise<VmReplicationEntity> {
    const record = await this.repository.getVm(vmId);
    if (!record || (record.sourceRemote !== remote && record.targetRemote !== remote))
      throw DomainError.notFound(`replication of VM ${vmId} at remote ${remote}`);
    return record;
  }

  private requireActive(record: VmReplicationEntity): void {
    if (record.phase !== 'active')
      throw new DomainError(
        ErrorCode.Conflict,
        `the replication of VM ${record.vmId} is ${record.phase}; wait for its task`,
      );
  }

  /** The pair named, or the paired pair between the two remotes; 404/409 with what to do. */
  private async pairFor(remote: string, body: EnableReplicationBody) {
    if (body.pair) {
      const pair = await this.repository.getPair(body.pair);
      if (!pair) throw DomainError.notFound(`pair ${body.pair}`);
      if (pair.remoteA !== remote && pair.remoteB !== remote)
        throw new DomainError(
          ErrorCode.Conflict,
          `pair ${pair.id} does not include remote ${remote}`,
        );
      const otherRemote = pair.remoteA === remote ? pair.remoteB : pair.remoteA;
      if (body.targetRemote && body.targetRemote !== otherRemote)
        throw new DomainError(
          ErrorCode.Conflict,
          `pair ${pair.id} pairs ${remote} with ${otherRemote}, not ${body.targetRemote}`,
        );
      if (pair.state !== 'paired')
        throw new DomainError(ErrorCode.Conflict, `pair ${pair.id} is ${pair.state}, not paired`);
      return pair;
    }
    const target = body.targetRemote!;
    if (target === remote)
      throw new DomainError(
        ErrorCode.ValidationFailed,
        'targetRemote: mirror to another remote than the VM’s own',
      );
    const pairs = await this.repository.pairsBetween(remote, target);
    if (pairs.length === 0)
      throw new DomainError(
        ErrorCode.Conflict,
        `no pool of ${remote} is paired with ${target}; pair them first (POST /api/v1/replication/pairs)`,
      );
    if (pairs.length > 1)
      throw new DomainError(
        ErrorCode.Conflict,
        `${pairs.length} pairs join ${remote} and ${target}; name one (pair)`,
      );
    return pairs[0];
  }

  /**
   * Runs a DR task; when it fails, the VM's record no longer names it (the next action may be
   * asked for, and the status poll settles a resync the task did not see end). A task let go at
   * shutdown keeps it: the next start resumes the task from it.
   */
  private async ending(context: TaskContext, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      if (!(error instanceof TaskSuspended)) {
        const record = context.task.vmId ? await this.repository.getVm(context.task.vmId) : null;
        if (record?.pending?.taskId === context.task.id)
          await this.repository.setPending(record.vmId, null);
      }
      throw error;
    }
    await this.observeAfter(context);
  }

  /**
   * Reads the sites once a task succeeded, so that the list shows what it left (an RPO, new roles)
   * at once rather than after the next poll; a failed read leaves that to the poll.
   */
  private async observeAfter(context: TaskContext): Promise<void> {
    const record = context.task.vmId ? await this.repository.getVm(context.task.vmId) : null;
    if (record?.phase !== 'active') return;
    try {
      this.poller.remember(record.vmId, await this.status.observe(record));
    } catch (error) {
      await context.log(
        `could not read both sites after the task (${error instanceof Error ? error.message : String(error)}); the next status poll will`,
      );
    }
  }

  private async interrupted(action: DrAction, task: Readonly<TaskEntity>): Promise<void> {
    const record = task.vmId ? await this.repository.getVm(task.vmId) : null;
    if (!record || record.pending?.taskId !== task.id) return;
    if (action === 'enable') await this.repository.deleteVm(record.vmId);
    else {
      if (action === 'disable') await this.repository.setPhase(record.vmId, 'active');
      await this.repository.setPending(record.vmId, null);
    }
  }
}

/** The API's view of a mirrored VM and what its sites answered (none yet: unknown). */
export function view(
  record: VmReplicationEntity,
  observed: Observation | undefined,
  withImages: boolean,
  now: Date = observed?.at ?? new Date(0),
): VmReplicationView {
  const primary = primarySide(record);
  // The RPO grows with time between two reads of the sites.
  const rpo =
    observed?.rpoSeconds === undefined
      ? null
      : observed.rpoSeconds +
        Math.max(0, Math.round((now.getTime() - observed.at.getTime()) / 1000));
  return {
    vm: record.vmId,
    name: record.vmName,
    pair: record.pairId,
    state: record.sourceState,
    primaryRemote: remoteAt(record, primary),
    source: { remote: record.sourceRemote, pool: record.sourcePool, role: record.sourceState },
    target: { remote: record.targetRemote, pool: record.targetPool, role: record.targetState },
    phase: record.phase,
    scheduleInterval: record.scheduleInterval,
    rpoTargetSeconds: record.rpoTargetSeconds,
    rpoSeconds: rpo,
    rpoExceeded: rpo === null ? null : rpo > record.rpoTargetSeconds,
    lastMirroredSnapshotAt: observed?.lastMirroredSnapshotAt ?? null,
    ...figures(observed?.images ?? []),
    health: observed?.health ?? 'unknown',
    splitBrain: observed?.splitBrain ?? false,
    observedAt: observed?.at.toISOString() ?? null,
    pending: record.pending
      ? { action: record.pending.action, taskId: record.pending.taskId }
      : null,
    lastChange: record.lastChange,
    lastChangeAt: record.lastChangeAt.toISOString(),
    ...(withImages ? { images: observed?.images ?? [] } : {}),
  };
}

/** The VM's lag (its most behind disk) and replication rate (all its disks), from the last reading. */
function figures(images: readonly ImageStatusView[]): {
  lagSeconds: number | null;
  bytesPerSecond: number;
} {
  const lags = images.flatMap((image) => (image.lagSeconds === null ? [] : [image.lagSeconds]));
  return {
    lagSeconds: lags.length ? Math.max(...lags) : null,
    bytesPerSecond: images.reduce((sum, image) => sum + image.bytesPerSecond, 0),
  };
}
