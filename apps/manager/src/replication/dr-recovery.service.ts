import type { Vm__Output } from '@debvisor/proto';
import { Injectable } from '@nestjs/common';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { TaskContext } from '../tasks/tasks.service';
import {
  DrRunnerService,
  MIRROR_PERMISSION,
  remoteAt,
  replaying,
  type SiteConnection,
  type SwitchoverProgress,
} from './dr-runner.service';
import { other, primarySide, roleOf, type DrAction, type PendingAction } from './dr-state';
import { drLine, messageOf, type DrStep } from './replication-journal';
import { ReplicationStatusService, type Observation } from './replication-status.service';
import { ReplicationTimerRepository } from './replication-timer.repository';
import { ReplicationRepository } from './replication.repository';
import type { VmReplicationEntity } from './vm-replication.entity';

/** How long a resumed DR task waits for both sites to answer (and a move under way at the agents to end) before deciding. */
export const RESUME_WAIT_MS = 60_000;
export const RESUME_POLL_MS = 2000;

/** What both sites answered after the restart. */
interface Truth {
  readonly observed: Observation;
  readonly vmAtFrom: Vm__Output | undefined;
  readonly vmAtTo: Vm__Output | undefined;
}

/**
 * Settles a switchover, failover or resync task that a previous manager process left running,
 * from the truth — each image's role at both sites and where the VM is defined and running — and
 * the steps the task recorded on the VM's replication record before its first change (which side
 * was primary, whether the VM ran). It finishes the remaining steps when that is safe, puts things
 * back as the failure path does otherwise, and says in the task's journal what it found.
 * - switchover: nothing changed yet → carried out; roles recorded → the VM started; the definition
 *   moved → the demotions and promotions still to do, then the roles; the definition still at the
 *   source with its images primary there → on from the final snapshot; anything else → undone.
 * - failover: roles not recorded → fenced and promoted again (both safe to repeat: the operator's
 *   confirmation stands); recorded → the VM brought up at the survivor.
 * - resync: recorded → waits for the resynced site to replay; not recorded but replaying → done;
 *   otherwise carried out again.
 */
@Injectable()
export class DrRecoveryService {
  constructor(
    private readonly repository: ReplicationRepository,
    private readonly status: ReplicationStatusService,
    private readonly runner: DrRunnerService,
    private readonly clock: ClockRepository,
    private readonly timer: ReplicationTimerRepository,
  ) {}

  async resume(action: DrAction, context: TaskContext): Promise<void> {
    const record = await this.repository.getVm(context.task.vmId ?? '');
    if (!record)
      throw new DomainError(
        ErrorCode.Conflict,
        'the manager restarted during this task and the VM has no replication record any more; nothing was settled',
      );
    if (record.pending?.taskId !== context.task.id) {
      // The task's last step clears the record's pending action: only the task's own end was lost.
      await log(
        context,
        'check',
        `the manager restarted after this task's last step: DR state ${remoteAt(record, primarySide(record))} primary (${record.lastChange})`,
      );
      return;
    }
    switch (action) {
      case 'switchover':
        return this.switchover(context, record, record.pending);
      case 'failover':
        return this.failover(context, record, record.pending);
      case 'resync':
        return this.resync(context, record, record.pending);
      default:
        throw new DomainError(ErrorCode.Internal, `a ${action} task cannot be resumed`);
    }
  }

  private async switchover(
    context: TaskContext,
    record: VmReplicationEntity,
    steps: PendingAction,
  ): Promise<void> {
    if (!steps.origin) {
      await log(
        context,
        'check',
        'the manager restarted before the switchover changed anything; carrying it out now',
      );
      return this.runner.switchover(context);
    }
    const from = await this.runner.site(record, steps.origin, steps, MIRROR_PERMISSION);
    const to = await this.runner.site(record, other(steps.origin), steps, MIRROR_PERMISSION);
    if (primarySide(record) !== steps.origin) {
      await log(
        context,
        'check',
        `the manager restarted after the DR state was recorded (${to.remote} primary); what remains is the VM's start`,
      );
      return this.runner.finishSwitchover(context, record, steps, to, true);
    }
    const truth = await this.truth(context, record, steps, from, to);
    const fromIndex = from.side === 'source' ? 0 : 1;
    const primaryAt = (index: number) =>
      record.disks.filter((_, i) => truth.observed.images[i]?.sites[index].primary === true);
    const atFrom = primaryAt(fromIndex);
    const atTo = primaryAt(1 - fromIndex);
    await log(
      context,
      'check',
      `the manager restarted during the switchover; found: images primary at ${from.remote} ${atFrom.length}/${record.disks.length}, at ${to.remote} ${atTo.length}/${record.disks.length}; ` +
        `the VM is ${describe(from.remote, truth.vmAtFrom)} and ${describe(to.remote, truth.vmAtTo)}`,
    );
    const sourceNode = steps.sourceNode ?? '';
    if (truth.vmAtTo) {
      // The definition moved (it does only once the final snapshots are at `to`): the rest loses nothing.
      const progress: SwitchoverProgress = {
        moved: true,
        demoted: record.disks.filter((disk) => !atFrom.includes(disk)),
        promoted: atTo,
      };
      await log(
        context,
        'check',
        `the VM's definition is at ${to.remote}: finishing the switchover there`,
      );
      return this.runner.switchStopped(context, record, steps, from, to, sourceNode, progress);
    }
    const demoted = record.disks.filter((disk) => !atFrom.includes(disk));
    if (atTo.length > 0 || demoted.length > 0) {
      // Images changed roles while the definition stayed: not a state the switchover reaches; taken back.
      await this.runner.undoSwitchover(
        context,
        record,
        from,
        to,
        { moved: false, demoted, promoted: atTo },
        sourceNode,
        steps.wasRunning !== false,
      );
      throw new DomainError(
        ErrorCode.Conflict,
        `the manager restarted during the switchover and found the images' roles changed while the VM stayed at ${from.remote}; the switchover was undone — ask for it again`,
      );
    }
    if (truth.vmAtFrom?.runtime?.state !== 'stopped')
      await this.runner.stopVm(context, from, truth.vmAtFrom!);
    await log(
      context,
      'check',
      `the VM and all its images are still at ${from.remote}: going on from the final snapshot`,
    );
    return this.runner.switchStopped(context, record, steps, from, to, sourceNode, {
      moved: false,
      demoted: [],
      promoted: [],
    });
  }

  private async failover(
    context: TaskContext,
    record: VmReplicationEntity,
    steps: PendingAction,
  ): Promise<void> {
    if (!steps.origin || primarySide(record) === steps.origin) {
      await log(
        context,
        'check',
        steps.origin
          ? 'the manager restarted before the DR state was recorded; fencing and promoting again (both are safe to repeat; the confirmation given stands)'
          : 'the manager restarted before the failover changed anything; carrying it out now',
      );
      return this.runner.failover(context);
    }
    const survivor = await this.runner.site(record, other(steps.origin), steps, MIRROR_PERMISSION);
    await log(
      context,
      'check',
      `the manager restarted after the DR state was recorded (${survivor.remote} primary); bringing the VM up there`,
    );
    return this.runner.bringUp(context, record, steps.origin, false, survivor, steps);
  }

  private async resync(
    context: TaskContext,
    record: VmReplicationEntity,
    steps: PendingAction,
  ): Promise<void> {
    const primary = primarySide(record);
    const stale = await this.runner.site(record, other(primary), steps, MIRROR_PERMISSION);
    if (roleOf(record, stale.side) === 'resync') {
      await log(
        context,
        'check',
        `the manager restarted while ${stale.remote} resynced; waiting for it to replay`,
      );
      return this.runner.awaitResynced(context, record, stale);
    }
    const observed = await this.status.observe(record, steps.credentials);
    if (
      !observed.splitBrain &&
      observed.images.length === record.disks.length &&
      replaying(observed.images, stale.side === 'source' ? 0 : 1)
    ) {
      await log(
        context,
        'check',
        `the manager restarted; ${stale.remote} replays from ${remoteAt(record, primary)} already: nothing left to do`,
      );
      await this.repository.setPending(record.vmId, null);
      return;
    }
    await log(
      context,
      'check',
      `the manager restarted before ${stale.remote} was recorded resyncing; carrying the resync out (again)`,
    );
    return this.runner.resync(context);
  }

  /**
   * Both sites' answers, once every image's role is known at both and the VM is defined at exactly
   * one of them (an offline move under way at the agents ends); at most RESUME_WAIT_MS, then the
   * task fails without a further change and the record is freed for the next action.
   */
  private async truth(
    context: TaskContext,
    record: VmReplicationEntity,
    steps: PendingAction,
    from: SiteConnection,
    to: SiteConnection,
  ): Promise<Truth> {
    const deadline = this.clock.now().getTime() + RESUME_WAIT_MS;
    let told = false;
    for (;;) {
      let missing: string;
      try {
        const observed = await this.status.observe(record, steps.credentials);
        const [vmAtFrom, vmAtTo] = [
          await this.runner.findVm(from.connection, record.vmId),
          await this.runner.findVm(to.connection, record.vmId),
        ];
        const known =
          observed.images.length === record.disks.length &&
          observed.images.every((image) =>
            image.sites.every((site) => site.reachable && site.primary !== null),
          );
        if (known && (vmAtFrom === undefined) !== (vmAtTo === undefined))
          return { observed, vmAtFrom, vmAtTo };
        missing = !known
          ? 'the images’ roles at both sites'
          : vmAtFrom
            ? `the VM to be defined at one site only (it is at ${from.remote} and ${to.remote})`
            : `the VM to be defined at one site (it is at neither)`;
      } catch (error) {
        missing = `both sites to answer (${messageOf(error)})`;
      }
      if (this.clock.now().getTime() >= deadline) {
        await this.repository.setPending(record.vmId, null);
        throw new DomainError(
          ErrorCode.RemoteUnreachable,
          `the manager restarted during the switchover and could not settle it: still waiting for ${missing} after ${RESUME_WAIT_MS / 1000} s; nothing was changed since — GET …/replication shows each image's role (runbook: docs/storage.md)`,
        );
      }
      if (!told)
        await log(
          context,
          'check',
          `the manager restarted during the switchover; waiting up to ${RESUME_WAIT_MS / 1000} s for ${missing}`,
        );
      told = true;
      await this.timer.sleep(RESUME_POLL_MS);
      this.runner.checkpoint();
    }
  }
}

function log(context: TaskContext, step: DrStep, message: string): Promise<void> {
  return context.log(drLine(step, message));
}

function describe(remote: string, vm: Vm__Output | undefined): string {
  return vm
    ? `${vm.runtime?.state || 'defined'} on node ${vm.runtime?.nodeId || 'unknown'} of ${remote}`
    : `not defined at ${remote}`;
}
