import type { Vm__Output } from '@debvisor/proto';
import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { remoteAclPath } from '../authz/acl-paths';
import { ownerPrincipal, type Caller } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError, PermissionDenied } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { RandomRepository } from '../common/random.repository';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { RemotesService } from '../remotes/remotes.service';
import { SchedulerService } from '../scheduler/scheduler.service';
import { TasksService, type TaskContext } from '../tasks/tasks.service';
import {
  nextRunAfter,
  parseInterval,
  formatInterval,
  type ScheduleTiming,
} from './schedule-timing';
import type { SnapshotScheduleEntity } from './snapshot-schedule.entity';
import type {
  CreateScheduleBody,
  ScheduleTarget,
  ScheduleView,
  UpdateScheduleBody,
} from './snapshot-schedules.dto';
import { SnapshotSchedulesRepository } from './snapshot-schedules.repository';
import { SnapshotsRepository } from './snapshots.repository';
import {
  SNAPSHOT_PERMISSION,
  SnapshotQuotaExceeded,
  SnapshotsService,
  stamp,
  vmPath,
} from './snapshots.service';

export const SCHEDULE_RUN_TASK = 'vm.snapshot.schedule';
/** The scheduler job that starts the snapshot schedules' runs when they are due. */
export const SCHEDULE_TICK_JOB = 'snapshots.schedule-tick';
const VM_READ_PERMISSION = 'vm:instance:read';

/**
 * Snapshot schedules: CRUD (vm.snapshot on the target: the VM, or the remote for label and pool
 * targets), and their runs as vm.snapshot.schedule tasks started by a scheduler job's tick. A run
 * snapshots each VM of the target as the schedule's owner (within its quota), then deletes that
 * VM's snapshots of this schedule beyond `keep`, oldest first; manual snapshots are never touched.
 * The next run is always planned after the time of the run: missed runs make one run.
 */
@Injectable()
export class SnapshotSchedulesService implements OnModuleInit {
  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    private readonly tasks: TasksService,
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly audit: AuditService,
    private readonly policy: AccessPolicy,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    private readonly schedules: SnapshotSchedulesRepository,
    private readonly records: SnapshotsRepository,
    private readonly snapshots: SnapshotsService,
    private readonly logger: PinoLogger,
    private readonly scheduler: SchedulerService,
  ) {
    logger.setContext(SnapshotSchedulesService.name);
  }

  onModuleInit(): void {
    this.tasks.registerHandler(SCHEDULE_RUN_TASK, {
      run: (context) =>
        this.audit.runAs(ownerPrincipal(context.task.owner), () => this.run(context)),
      afterInterrupted: (task) => void this.settleInterrupted(task.id, task.credentialId),
    });
    // One tick at a time (a job never overlaps itself): a slow database does not pile ticks up.
    this.scheduler.register({
      name: SCHEDULE_TICK_JOB,
      timing: { everyMs: this.config.snapshots.scheduleTickSeconds * 1000 },
      run: () => this.runDue(),
    });
  }

  async list(caller: Caller): Promise<{ items: ScheduleView[] }> {
    const all = await this.schedules.list();
    return {
      items: all
        .filter((schedule) => this.policy.holds(caller, 'vm.audit', targetPath(schedule)))
        .map((s) => this.toView(s)),
    };
  }

  async get(caller: Caller, id: string): Promise<ScheduleView> {
    return this.toView(await this.visible(caller, id));
  }

  async create(caller: Caller, body: CreateScheduleBody): Promise<ScheduleView> {
    await this.remotes.get(body.target.remote);
    const credentialId = this.authorize(caller, body.target);
    await this.remotes.connectionFor(body.target.remote, credentialId, SNAPSHOT_PERMISSION);
    const now = this.clock.now();
    const timing = timingOf(body);
    const schedule: SnapshotScheduleEntity = {
      id: this.random.uuid(),
      name: body.name,
      targetType: body.target.type,
      remoteId: body.target.remote,
      vmId: body.target.type === 'vm' ? body.target.vm : null,
      labels: body.target.type === 'labels' ? { ...body.target.labels } : null,
      pool: body.target.type === 'pool' ? body.target.pool : null,
      intervalSeconds: timing.intervalSeconds,
      cron: timing.cron,
      keep: body.keep,
      freeze: body.freeze,
      enabled: body.enabled,
      owner: caller.display,
      credentialId,
      createdAt: now,
      updatedAt: now,
      lastRunAt: null,
      lastTaskId: null,
      nextRunAt: nextRunAfter(timing, now, now),
    };
    this.checkKeep(schedule.keep);
    await this.schedules.insert(schedule);
    this.audit.note({
      scheduleId: schedule.id,
      target: targetPath(schedule),
      keep: schedule.keep,
      interval: body.interval ?? null,
      cron: body.cron ?? null,
    });
    return this.toView(schedule);
  }

  async update(caller: Caller, id: string, body: UpdateScheduleBody): Promise<ScheduleView> {
    const schedule = await this.visible(caller, id);
    this.authorize(caller, targetOf(schedule));
    const now = this.clock.now();
    const changes: Partial<SnapshotScheduleEntity> = { updatedAt: now };
    if (body.name !== undefined) changes.name = body.name;
    if (body.keep !== undefined) changes.keep = body.keep;
    if (body.freeze !== undefined) changes.freeze = body.freeze;
    if (body.enabled !== undefined) changes.enabled = body.enabled;
    const retimed = body.interval !== undefined || body.cron !== undefined;
    if (retimed) Object.assign(changes, timingOf(body));
    const updated = { ...schedule, ...changes };
    this.checkKeep(updated.keep);
    // A new timing, or a schedule enabled again, plans from now: nothing is made up for the time it was off.
    if (retimed || (body.enabled === true && !schedule.enabled))
      changes.nextRunAt = updated.nextRunAt = nextRunAfter(
        timingOfEntity(updated),
        updated.createdAt,
        now,
      );
    await this.schedules.update(id, changes);
    this.audit.note({ scheduleId: id, changed: Object.keys(body) });
    return this.toView(updated);
  }

  /** Removes the schedule; its snapshots stay (as snapshots no retention removes). */
  async remove(caller: Caller, id: string): Promise<void> {
    const schedule = await this.visible(caller, id);
    this.authorize(caller, targetOf(schedule));
    await this.schedules.delete(id);
    this.audit.note({ scheduleId: id, target: targetPath(schedule) });
  }

  /** Runs the schedule now (202): its timing is unchanged. */
  async runNow(caller: Caller, id: string): Promise<{ taskId: string }> {
    const schedule = await this.visible(caller, id);
    this.authorize(caller, targetOf(schedule));
    const accepted = await this.enqueueRun(schedule, caller.display);
    this.audit.note({ scheduleId: id, taskId: accepted.taskId });
    return accepted;
  }

  /**
   * The scheduler's tick: starts one run of every enabled schedule that is due, and plans its next
   * run after now (however many runs a downtime missed, one run makes up for them). A run refused
   * because the VM is busy (409) is tried again at the next tick. Never throws; answers how many runs started.
   */
  async runDue(): Promise<number> {
    let started = 0;
    let due: SnapshotScheduleEntity[];
    try {
      due = await this.schedules.due(this.clock.now());
    } catch (error) {
      this.logger.error({ err: error }, 'cannot read the snapshot schedules that are due');
      return 0;
    }
    for (const schedule of due) {
      try {
        const now = this.clock.now();
        const next = nextRunAfter(timingOfEntity(schedule), schedule.createdAt, now);
        if (!(await this.schedules.claim(schedule.id, now, next))) continue;
        try {
          await this.enqueueRun(schedule, schedule.owner);
          started += 1;
        } catch (error) {
          // Busy VM or manager stopping: due again at the next tick (its last run stays as it was).
          await this.schedules.update(schedule.id, {
            nextRunAt: schedule.nextRunAt,
            lastRunAt: schedule.lastRunAt,
          });
          this.logger.warn(
            { schedule: schedule.id, err: error },
            'snapshot schedule run not started; trying again at the next tick',
          );
        }
      } catch (error) {
        this.logger.error(
          { schedule: schedule.id, err: error },
          'cannot start a snapshot schedule run',
        );
      }
    }
    return started;
  }

  private async enqueueRun(
    schedule: SnapshotScheduleEntity,
    owner: string,
  ): Promise<{ taskId: string }> {
    const accepted = await this.tasks.enqueue(
      {
        type: SCHEDULE_RUN_TASK,
        remoteId: schedule.remoteId,
        vmId: schedule.vmId,
        owner,
        credentialId: schedule.credentialId,
      },
      {
        prepare: (taskId) =>
          this.records.insertTask({
            taskId,
            snapshot: null,
            scheduleId: schedule.id,
            options: { freeze: schedule.freeze },
          }),
      },
    );
    await this.schedules.update(schedule.id, { lastTaskId: accepted.taskId });
    return accepted;
  }

  /** A run a restart interrupted: the snapshots it had asked for are recorded as taken or released. */
  private async settleInterrupted(taskId: string, credentialId: string | null): Promise<void> {
    try {
      const scheduleId = (await this.records.taskParams(taskId))?.scheduleId;
      if (scheduleId)
        await this.snapshots.settlePending(
          await this.records.pendingOfSchedule(scheduleId),
          credentialId,
        );
    } catch (error) {
      this.logger.warn(
        { task: taskId, err: error },
        'cannot settle the snapshots of an interrupted schedule run',
      );
    }
  }

  /** One run: each VM of the target snapshotted, then its snapshots of this schedule beyond keep deleted. */
  private async run(context: TaskContext): Promise<void> {
    const params = await this.records.taskParams(context.task.id);
    const schedule = params?.scheduleId ? await this.schedules.get(params.scheduleId) : null;
    if (!schedule) throw DomainError.notFound(`the schedule of task ${context.task.id}`);
    const connection = await this.remotes.connectionFor(
      schedule.remoteId,
      schedule.credentialId,
      SNAPSHOT_PERMISSION,
    );
    const vmIds = await this.targetVms(schedule);
    await context.log(
      `schedule ${schedule.name} (${describeTarget(schedule)}): ${vmIds.length} VM(s), keep ${schedule.keep} each`,
    );
    const createdBy = ownerPrincipal(schedule.owner);
    const failures: string[] = [];
    for (const [index, vmId] of vmIds.entries()) {
      const name = `${schedule.name.slice(0, 40)}-${stamp(this.clock.now())}`;
      try {
        const record = {
          remoteId: schedule.remoteId,
          vmId,
          name,
          createdBy,
          scheduleId: schedule.id,
          description: null,
        };
        let recordId: string;
        try {
          recordId = await this.snapshots.reserve(record);
        } catch (error) {
          if (
            !(error instanceof SnapshotQuotaExceeded) ||
            !(await this.makeRoom(context, schedule, vmId, error))
          )
            throw error;
          recordId = await this.snapshots.reserve(record);
        }
        await this.snapshots.take(context, connection, {
          remoteId: schedule.remoteId,
          vmId,
          name,
          freeze: schedule.freeze,
          recordId,
        });
        await this.applyRetention(context, schedule, vmId);
      } catch (error) {
        const message =
          error instanceof DomainError
            ? error.message
            : 'failed unexpectedly; the manager log has the details';
        if (!(error instanceof DomainError))
          this.logger.error(
            { schedule: schedule.id, vm: vmId, err: error },
            'scheduled snapshot failed',
          );
        failures.push(`${vmId}: ${message}`);
        await context.log(`VM ${vmId}: ${message}`);
      }
      await context.progress((index + 1) / vmIds.length);
    }
    if (failures.length > 0)
      throw new DomainError(
        ErrorCode.Conflict,
        `${failures.length} of ${vmIds.length} VM(s) not snapshotted: ${failures.join('; ')}`,
      );
  }

  /** Deletes this schedule's snapshots of the VM beyond keep, oldest first. */
  private async applyRetention(
    context: TaskContext,
    schedule: SnapshotScheduleEntity,
    vmId: string,
  ): Promise<void> {
    const own = await this.records.ofSchedule(schedule.id, schedule.remoteId, vmId);
    await this.deleteOldest(context, schedule, vmId, own.slice(schedule.keep).reverse());
  }

  /**
   * At the quota, before the new snapshot: deletes as many of this schedule's oldest snapshots as
   * the new one needs, when the schedule holds that many beyond keep - 1 (what retention would
   * delete after the run anyway). False when that would not make room (manual snapshots hold the quota).
   */
  private async makeRoom(
    context: TaskContext,
    schedule: SnapshotScheduleEntity,
    vmId: string,
    refusal: SnapshotQuotaExceeded,
  ): Promise<boolean> {
    const own = await this.records.ofSchedule(schedule.id, schedule.remoteId, vmId);
    const needed = refusal.used - refusal.limit + 1;
    if (needed < 1 || own.length - (schedule.keep - 1) < needed) return false;
    await this.deleteOldest(context, schedule, vmId, own.slice(own.length - needed).reverse());
    return true;
  }

  private async deleteOldest(
    context: TaskContext,
    schedule: SnapshotScheduleEntity,
    vmId: string,
    oldestFirst: readonly { name: string }[],
  ): Promise<void> {
    if (oldestFirst.length === 0) return;
    const connection = await this.remotes.connectionFor(
      schedule.remoteId,
      schedule.credentialId,
      SNAPSHOT_PERMISSION,
    );
    for (const old of oldestFirst) {
      await this.snapshots.deleteSnapshot(connection, schedule.remoteId, vmId, old.name);
      await context.log(`retention (keep ${schedule.keep}): deleted ${old.name} of VM ${vmId}`);
    }
  }

  /** The VMs a run covers: the VM itself, or the remote's VMs that match now (read from the cluster at each run). */
  private async targetVms(schedule: SnapshotScheduleEntity): Promise<string[]> {
    if (schedule.targetType === 'vm') return [schedule.vmId!];
    const connection = await this.remotes.connectionFor(
      schedule.remoteId,
      schedule.credentialId,
      VM_READ_PERMISSION,
    );
    const { vms } = await this.agents.listVms(connection);
    return vms.filter((vm) => matches(schedule, vm)).map((vm) => vm.spec!.uuid);
  }

  /** vm.snapshot on the target (the credential to act with), 404 for a VM the caller may not see. */
  private authorize(caller: Caller, target: ScheduleTarget): string | null {
    const path = pathOf(target);
    if (target.type === 'vm' && !this.policy.holds(caller, 'vm.audit', path)) {
      throw new PermissionDenied(
        { privilege: 'vm.snapshot', path },
        {},
        `permission denied: needs vm.snapshot on ${path}`,
        'virtual machine',
      );
    }
    return this.policy.credentialFor(caller, 'vm.snapshot', path, target.remote);
  }

  /** The schedule, 404 when it does not exist or the caller may not see its target. */
  private async visible(caller: Caller, id: string): Promise<SnapshotScheduleEntity> {
    const schedule = await this.schedules.get(id);
    if (!schedule || !this.policy.holds(caller, 'vm.audit', targetPath(schedule)))
      throw DomainError.notFound(`snapshot schedule ${id}`);
    return schedule;
  }

  private checkKeep(keep: number): void {
    const quota = this.config.snapshots.quotaPerVm;
    if (keep > quota)
      throw new DomainError(
        ErrorCode.BadRequest,
        `keep ${keep} is over the snapshot quota of ${quota} per VM and principal (DEBVISOR_SNAPSHOT_QUOTA_PER_VM)`,
      );
  }

  private toView(schedule: SnapshotScheduleEntity): ScheduleView {
    return {
      id: schedule.id,
      name: schedule.name,
      target: {
        type: schedule.targetType,
        remote: schedule.remoteId,
        vm: schedule.vmId,
        labels: schedule.labels,
        pool: schedule.pool,
      },
      interval: schedule.intervalSeconds === null ? null : formatInterval(schedule.intervalSeconds),
      cron: schedule.cron,
      keep: schedule.keep,
      freeze: schedule.freeze,
      enabled: schedule.enabled,
      owner: schedule.owner,
      createdAt: schedule.createdAt.toISOString(),
      updatedAt: schedule.updatedAt.toISOString(),
      lastRunAt: schedule.lastRunAt?.toISOString() ?? null,
      lastTaskId: schedule.lastTaskId,
      nextRunAt: schedule.nextRunAt.toISOString(),
    };
  }
}

function timingOf(body: { interval?: string; cron?: string }): ScheduleTiming {
  return body.interval !== undefined
    ? { intervalSeconds: parseInterval(body.interval)!, cron: null }
    : { intervalSeconds: null, cron: body.cron! };
}

function timingOfEntity(
  schedule: Pick<SnapshotScheduleEntity, 'intervalSeconds' | 'cron'>,
): ScheduleTiming {
  return schedule.intervalSeconds !== null
    ? { intervalSeconds: schedule.intervalSeconds, cron: null }
    : { intervalSeconds: null, cron: schedule.cron ?? '' };
}

function targetOf(schedule: SnapshotScheduleEntity): ScheduleTarget {
  switch (schedule.targetType) {
    case 'vm':
      return { type: 'vm', remote: schedule.remoteId, vm: schedule.vmId! };
    case 'labels':
      return { type: 'labels', remote: schedule.remoteId, labels: schedule.labels ?? {} };
    case 'pool':
      return { type: 'pool', remote: schedule.remoteId, pool: schedule.pool! };
  }
}

/** Where a target is in the ACL tree: the VM, or its remote for label and pool targets. */
function pathOf(target: ScheduleTarget): string {
  return target.type === 'vm' ? vmPath(target.remote, target.vm) : remoteAclPath(target.remote);
}

function targetPath(schedule: SnapshotScheduleEntity): string {
  return pathOf(targetOf(schedule));
}

function describeTarget(schedule: SnapshotScheduleEntity): string {
  if (schedule.targetType === 'vm') return `VM ${schedule.vmId}`;
  if (schedule.targetType === 'pool')
    return `VMs of ${schedule.remoteId} with a disk in pool ${schedule.pool}`;
  return `VMs of ${schedule.remoteId} labelled ${Object.entries(schedule.labels ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(', ')}`;
}

function matches(schedule: SnapshotScheduleEntity, vm: Vm__Output): boolean {
  const spec = vm.spec;
  if (!spec?.uuid) return false;
  if (schedule.targetType === 'pool') return spec.disks.some((disk) => disk.pool === schedule.pool);
  return Object.entries(schedule.labels ?? {}).every(([key, value]) => spec.labels[key] === value);
}
