import type { VmSnapshot__Output } from '@debvisor/proto';
import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { vmAclPath } from '../authz/acl-paths';
import { ownerPrincipal, type Caller } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError, PermissionDenied } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { RandomRepository } from '../common/random.repository';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { RemotesService } from '../remotes/remotes.service';
import { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import { TasksService, type TaskContext } from '../tasks/tasks.service';
import type { CreateSnapshotBody, RollbackBody, SnapshotList, SnapshotView } from './snapshots.dto';
import { SnapshotsRepository } from './snapshots.repository';
import type { VmSnapshotEntity } from './vm-snapshot.entity';

export const SNAPSHOT_CREATE_TASK = 'vm.snapshot.create';
export const SNAPSHOT_DELETE_TASK = 'vm.snapshot.delete';
export const SNAPSHOT_ROLLBACK_TASK = 'vm.snapshot.rollback';

/** The cluster permissions of the agents' storage and power RPCs (apps/agent/src/rpc/permissions.ts). */
export const SNAPSHOT_PERMISSION = 'storage:rbd:snapshot';
export const STORAGE_READ_PERMISSION = 'storage:rbd:read';
const POWER_PERMISSION = 'vm:instance:power';

/** VM states in which a rollback may go ahead (nothing uses the disks). */
const STOPPED_STATES = new Set(['stopped', 'crashed']);

/** What taking one snapshot needs to know. */
export interface SnapshotShot {
  readonly remoteId: string;
  readonly vmId: string;
  readonly name: string;
  readonly freeze: boolean;
  /** The pending record that the snapshot fills (removed again when it fails). */
  readonly recordId: string;
}

/**
 * VM snapshots through the VM's remote: list (the agent's snapshots joined with the manager's
 * records of who took them), and create, delete and rollback as exclusive tasks (one operation
 * per VM: never during a migration). A per-principal quota bounds how many snapshots of one VM a
 * principal holds, manual and scheduled alike (see docs/storage.md).
 */
@Injectable()
export class SnapshotsService implements OnModuleInit {
  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    private readonly tasks: TasksService,
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly resources: ResourcesService,
    private readonly audit: AuditService,
    private readonly policy: AccessPolicy,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    private readonly repository: SnapshotsRepository,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext(SnapshotsService.name);
  }

  onModuleInit(): void {
    const asOwner = (work: (context: TaskContext) => Promise<void>) => (context: TaskContext) =>
      this.audit.runAs(ownerPrincipal(context.task.owner), () => work(context));
    this.tasks.registerHandler(SNAPSHOT_CREATE_TASK, {
      exclusive: true,
      run: asOwner((context) => this.runCreate(context)),
      afterInterrupted: (task) => void this.settleInterruptedCreate(task),
    });
    this.tasks.registerHandler(SNAPSHOT_DELETE_TASK, {
      exclusive: true,
      run: asOwner((context) => this.runDelete(context)),
    });
    this.tasks.registerHandler(SNAPSHOT_ROLLBACK_TASK, {
      exclusive: true,
      run: asOwner((context) => this.runRollback(context)),
      afterInterrupted: (task) => {
        if (task.remoteId && task.vmId) void this.resources.refreshVm(task.remoteId, task.vmId);
      },
    });
  }

  /** The VM's snapshots as its remote has them, oldest first, with the manager's record of each, and the caller's quota. */
  async list(caller: Caller, remoteId: string, vmId: string): Promise<SnapshotList> {
    await this.remotes.get(remoteId);
    const credentialId = this.policy.credentialFor(
      caller,
      'vm.audit',
      vmPath(remoteId, vmId),
      remoteId,
    );
    const connection = await this.remotes.connectionFor(
      remoteId,
      credentialId,
      STORAGE_READ_PERMISSION,
    );
    const snapshots = await this.agents.listVmSnapshots(connection, vmId);
    const dropped = await this.repository.forgetMissing(
      remoteId,
      vmId,
      snapshots.map((s) => s.snapshot),
    );
    if (dropped > 0)
      this.logger.info(
        { remote: remoteId, vm: vmId, records: dropped },
        'forgot records of snapshots deleted outside the manager',
      );
    const records = new Map(
      (await this.repository.forVm(remoteId, vmId)).map((record) => [record.name, record]),
    );
    const items = snapshots.map((snapshot) => toView(snapshot, records.get(snapshot.snapshot)));
    items.sort(
      (a, b) =>
        (a.createdAt ?? '').localeCompare(b.createdAt ?? '') || a.name.localeCompare(b.name),
    );
    const used = await this.repository.countFor(vmId, ownerPrincipal(caller.display));
    return { items, quota: { limit: this.config.snapshots.quotaPerVm, used } };
  }

  /** Queues a snapshot (202): 409 over the caller's quota, for a name in use, or while the VM has another operation. */
  async create(
    caller: Caller,
    remoteId: string,
    vmId: string,
    body: CreateSnapshotBody,
  ): Promise<{ taskId: string; snapshot: string }> {
    const credentialId = await this.authorize(caller, remoteId, vmId);
    const name = body.name ?? `manual-${stamp(this.clock.now())}`;
    const recordId = await this.reserve({
      remoteId,
      vmId,
      name,
      createdBy: ownerPrincipal(caller.display),
      scheduleId: null,
      description: body.description ?? null,
    });
    let accepted: { taskId: string };
    try {
      accepted = await this.tasks.enqueue(
        { type: SNAPSHOT_CREATE_TASK, remoteId, vmId, owner: caller.display, credentialId },
        {
          prepare: (taskId) =>
            this.repository.insertTask({
              taskId,
              snapshot: name,
              scheduleId: null,
              options: { freeze: body.freeze },
            }),
        },
      );
    } catch (error) {
      await this.repository.release(recordId);
      throw error;
    }
    this.audit.note({ taskId: accepted.taskId, snapshot: name, freeze: body.freeze });
    return { taskId: accepted.taskId, snapshot: name };
  }

  /** Queues the deletion of a snapshot the VM has (404 otherwise). */
  async remove(
    caller: Caller,
    remoteId: string,
    vmId: string,
    name: string,
  ): Promise<{ taskId: string; snapshot: string }> {
    const credentialId = await this.authorize(caller, remoteId, vmId);
    await this.requireSnapshot(remoteId, vmId, name, credentialId);
    const accepted = await this.tasks.enqueue(
      { type: SNAPSHOT_DELETE_TASK, remoteId, vmId, owner: caller.display, credentialId },
      {
        prepare: (taskId) =>
          this.repository.insertTask({ taskId, snapshot: name, scheduleId: null, options: {} }),
      },
    );
    this.audit.note({ taskId: accepted.taskId, snapshot: name });
    return { taskId: accepted.taskId, snapshot: name };
  }

  /**
   * Queues a rollback: the VM must be stopped (409 otherwise), unless stopFirst asks the task to
   * stop it (which needs vm.power as well); 409 while another operation (a migration) holds the VM.
   */
  async rollback(
    caller: Caller,
    remoteId: string,
    vmId: string,
    name: string,
    body: RollbackBody,
  ): Promise<{ taskId: string; snapshot: string }> {
    const credentialId = await this.authorize(caller, remoteId, vmId);
    const path = vmPath(remoteId, vmId);
    if (body.stopFirst && !this.policy.holds(caller, 'vm.power', path)) {
      throw new PermissionDenied(
        { privilege: 'vm.power', path },
        {},
        `permission denied: stopFirst stops the VM and needs vm.power on ${path}`,
      );
    }
    const connection = await this.remotes.connectionFor(
      remoteId,
      credentialId,
      SNAPSHOT_PERMISSION,
    );
    await this.requireSnapshot(remoteId, vmId, name, credentialId);
    const state = (await this.agents.getVm(connection, vmId)).runtime?.state || 'unknown';
    if (!STOPPED_STATES.has(state) && !body.stopFirst) throw notStopped(vmId, state);
    const accepted = await this.tasks.enqueue(
      { type: SNAPSHOT_ROLLBACK_TASK, remoteId, vmId, owner: caller.display, credentialId },
      {
        prepare: (taskId) =>
          this.repository.insertTask({
            taskId,
            snapshot: name,
            scheduleId: null,
            options: { stopFirst: body.stopFirst },
          }),
      },
    );
    this.audit.note({
      taskId: accepted.taskId,
      snapshot: name,
      stopFirst: body.stopFirst,
      vmState: state,
    });
    return { taskId: accepted.taskId, snapshot: name };
  }

  /**
   * A pending record for a snapshot to take, counted against `createdBy`'s quota on the VM: 409
   * naming the limit when the principal holds it already, or when the name is in use.
   */
  async reserve(
    record: Pick<
      VmSnapshotEntity,
      'remoteId' | 'vmId' | 'name' | 'createdBy' | 'scheduleId' | 'description'
    >,
  ): Promise<string> {
    const id = this.random.uuid();
    const quota = this.config.snapshots.quotaPerVm;
    const reservation = await this.repository.reserve(
      {
        ...record,
        id,
        state: 'pending',
        consistency: null,
        requestedAt: this.clock.now(),
        takenAt: null,
      },
      quota,
    );
    if (reservation.ok) return id;
    if (reservation.reason === 'exists')
      throw new DomainError(
        ErrorCode.Conflict,
        `VM ${record.vmId} already has a snapshot named ${record.name} (or one is being taken); choose another name`,
      );
    throw new SnapshotQuotaExceeded(
      reservation.used,
      quota,
      `snapshot quota reached: ${record.createdBy} holds ${reservation.used} snapshots of VM ${record.vmId} and the limit is ${quota} per VM and principal ` +
        '(DEBVISOR_SNAPSHOT_QUOTA_PER_VM); delete some of them (DELETE …/snapshots/{name}) or lower the keep count of your schedules to make room',
    );
  }

  /** Takes a reserved snapshot through the agent and logs how consistent it is; the record is filled, or released on failure. */
  async take(
    context: Pick<TaskContext, 'log'>,
    connection: AgentConnection,
    shot: SnapshotShot,
  ): Promise<VmSnapshot__Output> {
    const known = this.resources.cachedVm(shot.remoteId, shot.vmId);
    const label = known ? `${known.name} (${shot.vmId})` : shot.vmId;
    await context.log(
      `taking snapshot ${shot.name} of VM ${label}${shot.freeze ? ', freezing its filesystems first if its guest agent answers' : ' without freezing its filesystems'}`,
    );
    let snapshot: VmSnapshot__Output;
    try {
      snapshot = await this.agents.snapshotVm(connection, {
        vmUuid: shot.vmId,
        snapshot: shot.name,
        freeze: shot.freeze,
      });
    } catch (error) {
      await this.repository.release(shot.recordId);
      throw error;
    }
    await this.repository.markCreated(
      shot.recordId,
      parseTime(snapshot.createdAt) ?? this.clock.now(),
      consistencyOf(snapshot),
    );
    await context.log(consistencyLine(snapshot));
    const disks =
      snapshot.disks.map((disk) => `${disk.pool}/${disk.image}`).join(', ') || 'none reported';
    await context.log(
      `${snapshot.group ? `one RBD group snapshot of ${snapshot.disks.length} disks` : `${snapshot.disks.length} disk(s)`}: ${disks}`,
    );
    return snapshot;
  }

  /** Deletes a snapshot on the cluster and forgets its record. */
  async deleteSnapshot(
    connection: AgentConnection,
    remoteId: string,
    vmId: string,
    name: string,
  ): Promise<void> {
    let deleted: boolean;
    try {
      deleted = await this.agents.deleteVmSnapshot(connection, { vmUuid: vmId, snapshot: name });
    } catch (error) {
      // Gone already (deleted outside the manager): its record no longer counts either.
      if (error instanceof DomainError && error.code === ErrorCode.NotFound)
        await this.repository.forget(remoteId, vmId, name);
      throw error;
    }
    await this.repository.forget(remoteId, vmId, name);
    if (!deleted) throw DomainError.notFound(`snapshot ${name} of VM ${vmId}`);
  }

  private async runCreate(context: TaskContext): Promise<void> {
    const { remoteId, vmId } = target(context.task);
    const params = await this.params(context.task);
    const record = await this.repository.byName(remoteId, vmId, params.snapshot!);
    if (!record)
      throw new DomainError(
        ErrorCode.Conflict,
        `the record of snapshot ${params.snapshot} is gone; nothing was taken`,
      );
    let connection: AgentConnection;
    try {
      connection = await this.remotes.connectionFor(
        remoteId,
        context.task.credentialId,
        SNAPSHOT_PERMISSION,
      );
    } catch (error) {
      await this.repository.release(record.id);
      throw error;
    }
    await this.take(context, connection, {
      remoteId,
      vmId,
      name: record.name,
      freeze: params.options.freeze ?? true,
      recordId: record.id,
    });
  }

  private async runDelete(context: TaskContext): Promise<void> {
    const { remoteId, vmId } = target(context.task);
    const name = (await this.params(context.task)).snapshot!;
    const connection = await this.remotes.connectionFor(
      remoteId,
      context.task.credentialId,
      SNAPSHOT_PERMISSION,
    );
    await context.log(`deleting snapshot ${name} of VM ${vmId} from every disk`);
    await this.deleteSnapshot(connection, remoteId, vmId, name);
    await context.log(`snapshot ${name} deleted`);
  }

  private async runRollback(context: TaskContext): Promise<void> {
    const { remoteId, vmId } = target(context.task);
    const params = await this.params(context.task);
    const name = params.snapshot!;
    try {
      const connection = await this.remotes.connectionFor(
        remoteId,
        context.task.credentialId,
        SNAPSHOT_PERMISSION,
      );
      const state = (await this.agents.getVm(connection, vmId)).runtime?.state || 'unknown';
      if (!STOPPED_STATES.has(state)) {
        if (!params.options.stopFirst) throw notStopped(vmId, state);
        await context.log(`VM is ${state}: stopping it first (stopFirst)`);
        const power = await this.remotes.connectionFor(
          remoteId,
          context.task.credentialId,
          POWER_PERMISSION,
        );
        const stopped = await this.agents.vmAction(power, 'stop', vmId);
        await context.log(`VM stopped: now ${stopped.runtime?.state || 'unknown'}`);
      }
      await context.log(`rolling every disk of VM ${vmId} back to snapshot ${name}`);
      const snapshot = await this.agents.rollbackVm(connection, { vmUuid: vmId, snapshot: name });
      await context.log(
        `rolled back to ${name}${snapshot.createdAt ? ` taken at ${snapshot.createdAt}` : ''}: what was written since is gone; the VM stays stopped`,
      );
    } finally {
      await this.resources.refreshVm(remoteId, vmId);
    }
  }

  /** 403 without vm.snapshot on the VM (or its credential without the cluster permission); 404 for an unknown remote. */
  private async authorize(caller: Caller, remoteId: string, vmId: string): Promise<string | null> {
    await this.remotes.get(remoteId);
    const credentialId = this.policy.credentialFor(
      caller,
      'vm.snapshot',
      vmPath(remoteId, vmId),
      remoteId,
    );
    await this.remotes.connectionFor(remoteId, credentialId, SNAPSHOT_PERMISSION);
    return credentialId;
  }

  private async requireSnapshot(
    remoteId: string,
    vmId: string,
    name: string,
    credentialId: string | null,
  ): Promise<void> {
    const connection = await this.remotes.connectionFor(
      remoteId,
      credentialId,
      STORAGE_READ_PERMISSION,
    );
    const snapshots = await this.agents.listVmSnapshots(connection, vmId);
    if (!snapshots.some((s) => s.snapshot === name))
      throw DomainError.notFound(`snapshot ${name} of VM ${vmId}`);
  }

  private async params(task: Readonly<TaskEntity>) {
    const params = await this.repository.taskParams(task.id);
    if (!params)
      throw new DomainError(ErrorCode.Conflict, `task ${task.id} has lost its parameters`);
    return params;
  }

  /**
   * A create task that a restart interrupted: its snapshot may or may not have been taken. The
   * record is kept when the remote has the snapshot, else released (it would hold quota forever).
   */
  private async settleInterruptedCreate(task: Readonly<TaskEntity>): Promise<void> {
    try {
      const { remoteId, vmId } = target(task);
      const name = (await this.repository.taskParams(task.id))?.snapshot;
      const record = name ? await this.repository.byName(remoteId, vmId, name) : null;
      if (record) await this.settlePending([record], task.credentialId);
    } catch (error) {
      this.logger.warn(
        { task: task.id, err: error },
        'cannot settle the snapshot of an interrupted task; its record stays pending',
      );
    }
  }

  /**
   * Pending records whose task a restart interrupted (a create, or a schedule's run): each is
   * marked taken when its remote has the snapshot, else released. Never throws.
   */
  async settlePending(
    records: readonly VmSnapshotEntity[],
    credentialId: string | null,
  ): Promise<void> {
    for (const record of records.filter((r) => r.state === 'pending')) {
      try {
        const connection = await this.remotes.connectionFor(record.remoteId, credentialId);
        const found = (await this.agents.listVmSnapshots(connection, record.vmId)).find(
          (s) => s.snapshot === record.name,
        );
        if (found)
          await this.repository.markCreated(
            record.id,
            parseTime(found.createdAt) ?? this.clock.now(),
            consistencyOf(found),
          );
        else await this.repository.release(record.id);
      } catch (error) {
        this.logger.warn(
          { record: record.id, vm: record.vmId, err: error },
          'cannot settle a pending snapshot record; it stays pending',
        );
      }
    }
  }
}

/** 409: the principal holds its quota of snapshots of the VM. */
export class SnapshotQuotaExceeded extends DomainError {
  constructor(
    readonly used: number,
    readonly limit: number,
    message: string,
  ) {
    super(ErrorCode.Conflict, message);
    this.name = 'SnapshotQuotaExceeded';
  }
}

function toView(snapshot: VmSnapshot__Output, record: VmSnapshotEntity | undefined): SnapshotView {
  return {
    name: snapshot.snapshot,
    createdAt: parseTime(snapshot.createdAt)?.toISOString() ?? null,
    consistency: consistencyOf(snapshot),
    consistencyReason:
      consistencyOf(snapshot) === 'crash'
        ? snapshot.consistencyReason || 'taken without freezing the guest'
        : null,
    group: snapshot.group,
    disks: snapshot.disks.map((disk) => ({
      pool: disk.pool,
      image: disk.image,
      sizeBytes: Number(disk.sizeBytes) || 0,
    })),
    createdBy: record?.createdBy ?? null,
    scheduleId: record?.scheduleId ?? null,
    description: record?.description ?? null,
  };
}

function consistencyOf(snapshot: VmSnapshot__Output): 'application' | 'crash' {
  return snapshot.consistency === 'application' ? 'application' : 'crash';
}

/** The task log's line on consistency. */
export function consistencyLine(snapshot: VmSnapshot__Output): string {
  return consistencyOf(snapshot) === 'application'
    ? 'froze filesystems: application-consistent'
    : `crash-consistent: ${snapshot.consistencyReason || 'taken without freezing the guest'}`;
}

function notStopped(vmId: string, state: string): DomainError {
  return new DomainError(
    ErrorCode.Conflict,
    `VM ${vmId} is ${state}: a rollback needs it stopped (its disks are rewritten); stop it first, or ask for {"stopFirst": true}`,
  );
}

function target(task: Readonly<TaskEntity>): { remoteId: string; vmId: string } {
  return { remoteId: task.remoteId!, vmId: task.vmId! };
}

function parseTime(text: string): Date | undefined {
  const time = text ? new Date(text) : undefined;
  return time && !Number.isNaN(time.getTime()) ? time : undefined;
}

/** `2026-12-07T13:05:09.123Z` → `20261207t130509z`: a name part that sorts by time. */
export function stamp(at: Date): string {
  return at
    .toISOString()
    .replace(/\.\d+Z$/, 'z')
    .replace(/[-:]/g, '')
    .toLowerCase();
}

export function vmPath(remoteId: string, vmId: string): string {
  return vmAclPath(remoteId, vmId);
}
