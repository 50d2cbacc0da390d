import type { VmSpec, Vm__Output } from '@debvisor/proto';
import { Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AclService } from '../acl/acl.service';
import { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { vmAclPath } from '../authz/acl-paths';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MigrationService } from '../migration/migration.service';
import { RemotesService } from '../remotes/remotes.service';
import { ResourcesService } from '../resources/resources.service';
import { TaskSuspended } from '../tasks/task-suspended';
import type { TaskContext } from '../tasks/tasks.service';
import {
  failover,
  other,
  primarySide,
  resync,
  resyncSettled,
  switchover,
  type PendingAction,
  type ReplicatedDisk,
  type Side,
} from './dr-state';
import { drLine, messageOf, type DrStep } from './replication-journal';
import { mapPool, ReplicationStatusService } from './replication-status.service';
import { ReplicationTimerRepository } from './replication-timer.repository';
import { ReplicationRepository } from './replication.repository';
import type { VmReplicationEntity } from './vm-replication.entity';

/** Cluster permissions of the agents' RPCs (apps/agent/src/rpc/permissions.ts). */
export const MIRROR_PERMISSION = 'storage:rbd:mirror';
export const PAIR_PERMISSION = 'storage:mirror:pair';
export const FENCE_PERMISSION = 'storage:rbd:fence';
export const POWER_PERMISSION = 'vm:instance:power';

/** How long a switchover waits for the final mirror snapshot to reach the other site. */
export const SYNC_TIMEOUT_MS = 10 * 60_000;
/** How long a resync task waits to see the resynced site replaying (the poller finishes it otherwise). */
export const RESYNC_WAIT_MS = 5 * 60_000;
/** How long a VM may take to stop before a switchover. */
export const STOP_TIMEOUT_MS = 120_000;
export const POLL_INTERVAL_MS = 1000;
/** The longest pause between attempts to move a failed-over VM's grants. */
export const GRANT_MOVE_MAX_PAUSE_MS = 10_000;

/** How far a switchover got, for its rollback. */
export interface SwitchoverProgress {
  moved: boolean;
  demoted: ReplicatedDisk[];
  promoted: ReplicatedDisk[];
}

/** One site of a mirrored VM, connected. */
export interface SiteConnection {
  readonly side: Side;
  readonly remote: string;
  readonly connection: AgentConnection;
}

/**
 * Carries out the replication tasks: pairing (the peer bootstrap token goes from one agent's answer
 * into the other agent's request and nowhere else), enabling and disabling a VM's mirroring, and the
 * DR actions — planned switchover, unplanned failover with fencing, resync — each step journalled
 * as `[step] …` in the task's log.
 */
@Injectable()
export class DrRunnerService {
  /** The process is stopping: running DR tasks let go at their next step (the next start resumes them). */
  private suspending = false;

  constructor(
    private readonly repository: ReplicationRepository,
    private readonly status: ReplicationStatusService,
    private readonly agents: AgentClientRepository,
    private readonly remotes: RemotesService,
    private readonly resources: ResourcesService,
    private readonly migration: MigrationService,
    private readonly acl: AclService,
    private readonly clock: ClockRepository,
    private readonly timer: ReplicationTimerRepository,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext(DrRunnerService.name);
  }

  /** At shutdown: every DR task stops at its next step and stays running (DrRecoveryService settles it after the next start). */
  suspend(): void {
    this.suspending = true;
  }

  /** Between steps: a shutdown lets go here. */
  checkpoint(): void {
    if (this.suspending) throw new TaskSuspended();
  }

  // --- pairing ---------------------------------------------------------------------------------

  async pair(context: TaskContext): Promise<void> {
    const pair = await this.repository.getPairByTask(context.task.id);
    if (!pair)
      throw new DomainError(
        ErrorCode.Internal,
        'the pair record of this task is missing; nothing was done',
      );
    const log = (step: DrStep, message: string) => context.log(drLine(step, message));
    try {
      const [a, b] = await Promise.all([
        this.remotes.connectionFor(pair.remoteA, null, PAIR_PERMISSION),
        this.remotes.connectionFor(pair.remoteB, null, PAIR_PERMISSION),
      ]);
      await log(
        'pair',
        `asking remote ${pair.remoteA} for a peer bootstrap token of pool ${pair.poolA}`,
      );
      await this.handOverBootstrap(a, pair.poolA, pair.remoteA, b, pair.poolB, pair.remoteB);
      await log(
        'pair',
        `remote ${pair.remoteB} imported it into pool ${pair.poolB} (rx-tx); the token was kept in memory only`,
      );
      const back = await this.agents.getPoolMirrorStatus(a, {
        pool: pair.poolA,
        siteName: pair.remoteA,
      });
      if (!back.peers.some((peer) => peer.siteName === pair.remoteB)) {
        await log(
          'pair',
          `remote ${pair.remoteA} does not list ${pair.remoteB} as a peer yet: importing ${pair.remoteB}'s token at ${pair.remoteA}`,
        );
        await this.handOverBootstrap(b, pair.poolB, pair.remoteB, a, pair.poolA, pair.remoteA);
      }
      await this.repository.setPairState(pair.id, 'paired', null, this.clock.now());
      await log(
        'done',
        `pool ${pair.poolA} of ${pair.remoteA} and pool ${pair.poolB} of ${pair.remoteB} are paired`,
      );
    } catch (error) {
      await this.repository.setPairState(pair.id, 'failed', messageOf(error), this.clock.now());
      throw error;
    }
  }

  /**
   * The token lives in this frame only: from `from`'s answer into `to`'s request. Errors are
   * re-thrown with the token struck out, in case a remote echoed it.
   */
  private async handOverBootstrap(
    from: AgentConnection,
    fromPool: string,
    fromSite: string,
    to: AgentConnection,
    toPool: string,
    toSite: string,
  ): Promise<void> {
    const { token } = await this.agents.createPeerBootstrap(from, {
      pool: fromPool,
      siteName: fromSite,
    });
    if (!token)
      throw new DomainError(
        ErrorCode.RemoteError,
        `remote ${fromSite} answered no peer bootstrap token`,
      );
    try {
      await this.agents.importPeerBootstrap(to, {
        pool: toPool,
        siteName: toSite,
        token,
        direction: 'rx-tx',
      });
    } catch (error) {
      if (error instanceof DomainError && error.message.includes(token))
        throw new DomainError(error.code, error.message.split(token).join('[redacted]'));
      throw error;
    }
  }

  // --- enable / disable ------------------------------------------------------------------------

  async enable(context: TaskContext): Promise<void> {
    const record = await this.record(context);
    const pending = pendingOf(record);
    const log = (step: DrStep, message: string) => context.log(drLine(step, message));
    const source = await this.site(record, 'source', pending, MIRROR_PERMISSION);
    const enabled: ReplicatedDisk[] = [];
    try {
      for (const disk of record.disks) {
        await log(
          'enable',
          `mirroring ${disk.pool}/${disk.image} to ${record.targetRemote}/${mapPool(record, disk.pool)} (snapshot mode, every ${record.scheduleInterval})`,
        );
        await this.agents.enableMirroring(source.connection, {
          pool: disk.pool,
          image: disk.image,
          mode: 'snapshot',
          scheduleInterval: record.scheduleInterval,
        });
        enabled.push(disk);
      }
    } catch (error) {
      for (const disk of enabled) {
        try {
          await this.agents.disableMirroring(source.connection, {
            pool: disk.pool,
            image: disk.image,
            force: true,
          });
          await log('rollback', `mirroring of ${disk.pool}/${disk.image} turned off again`);
        } catch (undo) {
          await log(
            'rollback',
            `could not turn mirroring of ${disk.pool}/${disk.image} off again (${messageOf(undo)}); disable it by hand`,
          );
        }
      }
      await this.repository.deleteVm(record.vmId);
      throw error;
    }
    await this.repository.setPhase(record.vmId, 'active');
    await this.repository.setRoles(
      record.vmId,
      { sourceState: 'primary', targetState: 'secondary' },
      `mirroring enabled by ${context.task.owner}`,
      this.clock.now(),
    );
    await log(
      'done',
      `${record.disks.length} disk(s) mirrored from ${record.sourceRemote} to ${record.targetRemote}; DR state: primary at ${record.sourceRemote}, secondary at ${record.targetRemote}`,
    );
  }

  async disable(context: TaskContext): Promise<void> {
    const record = await this.record(context);
    const pending = pendingOf(record);
    const log = (step: DrStep, message: string) => context.log(drLine(step, message));
    const primary = await this.site(record, primarySide(record), pending, MIRROR_PERMISSION);
    try {
      for (const disk of record.disks) {
        const pool = poolAt(record, primary.side, disk);
        await log(
          'disable',
          `turning mirroring of ${pool}/${disk.image} off at ${primary.remote} (the copy at the other site is removed by rbd-mirror)`,
        );
        await this.agents.disableMirroring(primary.connection, {
          pool,
          image: disk.image,
          force: false,
        });
      }
    } catch (error) {
      await this.repository.setPhase(record.vmId, 'active');
      await this.repository.setPending(record.vmId, null);
      throw error;
    }
    await this.repository.deleteVm(record.vmId);
    await log('done', `mirroring of VM ${record.vmName} is off; it stays at ${primary.remote}`);
  }

  // --- planned switchover ------------------------------------------------------------------------

  async switchover(context: TaskContext): Promise<void> {
    const record = await this.record(context);
    const pending = pendingOf(record);
    const log = (step: DrStep, message: string) => context.log(drLine(step, message));
    const fromSide = primarySide(record);
    switchover(record, (await this.status.observe(record, pending.credentials)).splitBrain);
    const from = await this.site(record, fromSide, pending, MIRROR_PERMISSION);
    const to = await this.site(record, other(fromSide), pending, MIRROR_PERMISSION);
    const targetNode = pending.targetNode || (await this.firstNode(to.connection, to.remote));
    await log(
      'check',
      `planned switchover of VM ${record.vmName} from ${from.remote} to node ${targetNode} of ${to.remote}`,
    );

    const vm = await this.agents.getVm(from.connection, record.vmId);
    const wasRunning = vm.runtime?.state !== 'stopped';
    // Before the first change: what a resumed task needs to know (where from, to which node, whether to start the VM).
    const steps: PendingAction = {
      ...pending,
      targetNode,
      origin: fromSide,
      wasRunning,
      sourceNode: vm.runtime?.nodeId ?? '',
    };
    await this.repository.setPending(record.vmId, steps);
    if (wasRunning) await this.stopVm(context, from, vm);
    else await log('stop', `the VM is already stopped at ${from.remote}`);
    this.checkpoint();
    await this.switchStopped(context, record, steps, from, to, vm.runtime?.nodeId ?? '', {
      moved: false,
      demoted: [],
      promoted: [],
    });
  }

  /**
   * A switchover from the point where the VM is stopped at `from` and `done` says how far it got:
   * the final snapshots and the move (unless moved), the demotions and promotions still to do, the
   * roles recorded, the VM started. On a failure, everything is put back (undoSwitchover).
   */
  async switchStopped(
    context: TaskContext,
    record: VmReplicationEntity,
    steps: PendingAction,
    from: SiteConnection,
    to: SiteConnection,
    sourceNode: string,
    progress: SwitchoverProgress,
  ): Promise<void> {
    const log = (step: DrStep, message: string) => context.log(drLine(step, message));
    const after = switchover(record, false);
    const wasRunning = steps.wasRunning !== false;
    try {
      if (!progress.moved) await this.finalSnapshotAndMove(context, record, steps, from, to);
      progress.moved = true;
      this.checkpoint();
      for (const disk of record.disks) {
        if (progress.demoted.includes(disk)) continue;
        const pool = poolAt(record, from.side, disk);
        await this.agents.demoteImage(from.connection, { pool, image: disk.image });
        progress.demoted.push(disk);
        await log('demote', `${pool}/${disk.image} demoted at ${from.remote}`);
      }
      this.checkpoint();
      await this.promoteWhenDemotionArrived(context, record, to, progress.promoted);
    } catch (error) {
      if (error instanceof TaskSuspended) throw error;
      await this.undoSwitchover(context, record, from, to, progress, sourceNode, wasRunning);
      throw error;
    }
    await this.repository.setRoles(
      record.vmId,
      after,
      `switchover to ${to.remote} by ${context.task.owner}`,
      this.clock.now(),
      steps,
    );
    await this.finishSwitchover(context, record, steps, to, false);
  }

  /**
   * After the roles were recorded: the VM started at `to` when it ran before (`resumed`: unless it
   * runs already), and the record no longer names the task.
   */
  async finishSwitchover(
    context: TaskContext,
    record: VmReplicationEntity,
    steps: PendingAction,
    to: SiteConnection,
    resumed: boolean,
  ): Promise<void> {
    const log = (step: DrStep, message: string) => context.log(drLine(step, message));
    await log(
      'done',
      `DR state: ${to.remote} primary, ${remoteAt(record, other(to.side))} secondary`,
    );
    if (steps.wasRunning === false)
      await log(
        'start',
        `the VM was stopped before the switchover; it stays stopped at ${to.remote}`,
      );
    else if (
      resumed &&
      (await this.findVm(to.connection, record.vmId))?.runtime?.state === 'running'
    )
      await log('start', `the VM is running at ${to.remote} already`);
    else await this.startVm(context, to);
    await this.repository.setPending(record.vmId, null);
  }

  /** The final mirror snapshots, mirrored completely, then the stopped VM's definition moved to `to`. */
  private async finalSnapshotAndMove(
    context: TaskContext,
    record: VmReplicationEntity,
    steps: PendingAction,
    from: SiteConnection,
    to: SiteConnection,
  ): Promise<void> {
    const log = (step: DrStep, message: string) => context.log(drLine(step, message));
    const finals = new Map<string, string>();
    for (const disk of record.disks) {
      const pool = poolAt(record, from.side, disk);
      const snapshot = await this.agents.createMirrorSnapshot(from.connection, {
        pool,
        image: disk.image,
      });
      finals.set(disk.image, snapshot.lastSnapshotAt);
      await log(
        'snapshot',
        `final mirror snapshot of ${pool}/${disk.image} taken at ${snapshot.lastSnapshotAt || 'now'}`,
      );
    }
    await this.waitSynced(context, record, from, finals);
    this.checkpoint();

    // The definition moves while the target's images are up-to-date mirrors (what the migration's pre-flight proves).
    const targetNode = steps.targetNode ?? '';
    await log(
      'move',
      `moving the VM's definition to node ${targetNode} of ${to.remote} (offline migration)`,
    );
    await this.migration.moveStoppedVm(context, {
      vmId: record.vmId,
      sourceRemote: from.remote,
      sourceCredentialId: steps.credentials[from.remote] ?? null,
      targetRemote: to.remote,
      targetNode,
      targetCredentialId: steps.credentials[to.remote] ?? null,
      storageMap: storageMapOf(record, from.side),
    });
  }

  /** After a failed switchover: the source takes its images and the VM's definition back, and the VM runs there as before (`sourceNode`: where it was defined). */
  async undoSwitchover(
    context: TaskContext,
    record: VmReplicationEntity,
    from: SiteConnection,
    to: SiteConnection,
    progress: SwitchoverProgress,
    sourceNode: string,
    wasRunning: boolean,
  ): Promise<void> {
    const log = (message: string) => context.log(drLine('rollback', message));
    try {
      if (progress.promoted.length > 0) {
        for (const disk of progress.promoted)
          await this.agents.demoteImage(to.connection, {
            pool: poolAt(record, to.side, disk),
            image: disk.image,
          });
        await log(`images demoted again at ${to.remote}`);
        await this.promoteWhenDemotionArrived(context, record, from, []);
        await log(`images promoted again at ${from.remote}`);
      } else if (progress.demoted.length > 0) {
        // The other site never became primary: taking the images back loses nothing.
        for (const disk of progress.demoted)
          await this.agents.promoteImage(from.connection, {
            pool: poolAt(record, from.side, disk),
            image: disk.image,
            force: true,
          });
        await log(`images promoted again at ${from.remote} (${to.remote} never was primary)`);
      }
      if (progress.moved) {
        await this.agents.undefineVm(to.connection, record.vmId);
        await this.agents.defineVm(from.connection, {
          spec: specAt(record, from.side),
          nodeId: sourceNode,
        });
        await log(
          `the VM's definition is back on node ${sourceNode || 'unknown'} of ${from.remote}`,
        );
      }
      if (wasRunning) await this.startVm(context, from);
      await this.repository.setPending(record.vmId, null);
      await log(`the switchover was undone: the VM is at ${from.remote} as before`);
    } catch (error) {
      this.logger.error({ task: context.task.id, err: error }, 'switchover rollback failed');
      await log(
        `could not undo the switchover (${messageOf(error)}); GET …/replication shows where each image is primary — fix it by hand (runbook: docs/storage.md)`,
      );
    } finally {
      await Promise.all([
        this.resources.refreshRemote(from.remote),
        this.resources.refreshRemote(to.remote),
      ]);
    }
  }

  // --- unplanned failover ------------------------------------------------------------------------

  async failover(context: TaskContext): Promise<void> {
    const record = await this.record(context);
    const pending = pendingOf(record);
    const log = (step: DrStep, message: string) => context.log(drLine(step, message));
    const lostSide = primarySide(record);
    const after = failover(record);
    const lostRemote = remoteAt(record, lostSide);
    const survivor = await this.site(record, other(lostSide), pending, MIRROR_PERMISSION);
    const observed = await this.status.observe(record, pending.credentials);
    // Before the first change: the side that was primary (a resumed task tells from it whether the roles were recorded).
    const steps: PendingAction = { ...pending, origin: lostSide };
    await this.repository.setPending(record.vmId, steps);
    await log(
      'check',
      `unplanned failover of VM ${record.vmName} from ${lostRemote} to ${survivor.remote}; data at risk: the writes of the last ${observed.rpoSeconds ?? 'unknown'} s (last mirrored snapshot ${observed.lastMirroredSnapshotAt ?? 'unknown'})`,
    );

    // Fence first: the old primary must write no more before its copy is promoted elsewhere.
    const fenced = await this.fence(context, record, lostSide, pending);
    if (!fenced) {
      if (!pending.declareSourceDown) {
        throw new DomainError(
          ErrorCode.Conflict,
          `remote ${lostRemote} cannot be fenced (it does not answer); nothing was promoted — if it is down, fail over with declareSourceDown and a reason`,
        );
      }
      await log(
        'fence',
        `not fenced: ${context.task.owner} declared remote ${lostRemote} down (${pending.reason ?? 'no reason given'}); recorded in the audit log`,
      );
    }
    this.checkpoint();

    for (const disk of record.disks) {
      const pool = poolAt(record, survivor.side, disk);
      await this.agents.promoteImage(survivor.connection, { pool, image: disk.image, force: true });
      await log('promote', `${pool}/${disk.image} force-promoted at ${survivor.remote}`);
    }
    await this.repository.setRoles(
      record.vmId,
      after,
      `failover to ${survivor.remote} by ${context.task.owner}${fenced ? ' (old primary fenced)' : ` (${lostRemote} declared down: ${pending.reason ?? ''})`}`,
      this.clock.now(),
      steps,
    );
    await log(
      'done',
      `DR state: ${survivor.remote} primary; ${lostRemote} is stale — when it returns, its images are primary too (split brain): resync it`,
    );
    this.checkpoint();
    await this.bringUp(context, record, lostSide, fenced, survivor, pending);
  }

  /**
   * FenceImage on every disk at the lost site: true when all were fenced (the blocklisted clients
   * and broken locks journalled), false when the site could not be reached at all.
   */
  private async fence(
    context: TaskContext,
    record: VmReplicationEntity,
    side: Side,
    pending: PendingAction,
  ): Promise<boolean> {
    const remote = remoteAt(record, side);
    let site: SiteConnection;
    try {
      site = await this.site(record, side, pending, FENCE_PERMISSION);
    } catch (error) {
      if (error instanceof DomainError && error.code === ErrorCode.Forbidden) throw error;
      await context.log(drLine('fence', `cannot reach remote ${remote}: ${messageOf(error)}`));
      return false;
    }
    try {
      for (const disk of record.disks) {
        const pool = poolAt(record, side, disk);
        const answer = await this.agents.fenceImage(site.connection, { pool, image: disk.image });
        await context.log(
          drLine(
            'fence',
            `${pool}/${disk.image} at ${remote}: blocklisted ${answer.blocklisted.join(', ') || 'no clients'}; locks broken: ${answer.locksBroken.join(', ') || 'none'}`,
          ),
        );
      }
    } catch (error) {
      if (
        !(error instanceof DomainError) ||
        (error.code !== ErrorCode.RemoteUnreachable && error.code !== ErrorCode.RemoteTlsFailed)
      )
        throw error;
      await context.log(drLine('fence', `remote ${remote} does not answer: ${error.message}`));
      return false;
    }
    // Fenced: the VM there can write no more; stopping it is a courtesy (best effort).
    try {
      await this.agents.vmAction(site.connection, 'stop', record.vmId);
      await context.log(drLine('stop', `the VM was stopped at ${remote}`));
    } catch (error) {
      await context.log(
        drLine(
          'stop',
          `could not stop the VM at ${remote} (${messageOf(error)}); it is fenced and writes nothing`,
        ),
      );
    }
    return true;
  }

  /**
   * The VM at the survivor, then started: defined there from the definition the manager kept. When
   * the lost site answered (it was fenced), its stopped copy is removed first, so that the VM is
   * defined once; otherwise the resync removes it when that site returns.
   */
  async bringUp(
    context: TaskContext,
    record: VmReplicationEntity,
    lostSide: Side,
    fenced: boolean,
    survivor: SiteConnection,
    pending: PendingAction,
  ): Promise<void> {
    const log = (step: DrStep, message: string) => context.log(drLine(step, message));
    const lostRemote = remoteAt(record, lostSide);
    const here = await this.findVm(survivor.connection, record.vmId);
    if (here?.runtime?.state === 'running') {
      await log(
        'start',
        `the VM is running on node ${here.runtime.nodeId || 'unknown'} of ${survivor.remote} already`,
      );
      await this.repository.setPending(record.vmId, null);
      return;
    }
    if (here) {
      await log(
        'move',
        `the VM is already defined at ${survivor.remote} (node ${here.runtime?.nodeId || 'unknown'})`,
      );
    } else {
      if (fenced) {
        try {
          const lost = await this.site(record, lostSide, pending, MIRROR_PERMISSION);
          if (await this.findVm(lost.connection, record.vmId)) {
            await this.agents.undefineVm(lost.connection, record.vmId);
            await log('move', `removed the VM's definition at ${lostRemote}`);
          }
        } catch (error) {
          await log(
            'move',
            `could not remove the VM's definition at ${lostRemote} (${messageOf(error)}); the resync removes it`,
          );
        }
      }
      const targetNode =
        pending.targetNode || (await this.firstNode(survivor.connection, survivor.remote));
      await log(
        'move',
        `defining the VM on node ${targetNode} of ${survivor.remote} from the definition the manager kept`,
      );
      await this.agents.defineVm(survivor.connection, {
        spec: specAt(record, survivor.side),
        nodeId: targetNode,
      });
    }
    // Also when the VM was defined by an earlier attempt: that attempt may have ended before this.
    const moved = await this.moveGrants(context, record.vmId, lostRemote, survivor.remote);
    if (moved > 0)
      await log(
        'move',
        `moved ${moved} ACL ${moved === 1 ? 'entry' : 'entries'} on the VM to ${vmAclPath(survivor.remote, record.vmId)}`,
      );
    await this.startVm(context, survivor);
    await this.repository.setPending(record.vmId, null);
    await this.resources.refreshRemote(lostRemote);
  }

  /**
   * The grants on the VM follow it to the survivor (idempotent). A failed write (the database away
   * for a moment) is tried again with a growing pause rather than failing a failover whose VM is
   * already defined there; a shutdown lets go, and the resumed task moves them.
   */
  private async moveGrants(
    context: TaskContext,
    vmId: string,
    fromRemote: string,
    toRemote: string,
  ): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      this.checkpoint();
      try {
        return await this.acl.moveVmGrants(vmId, fromRemote, toRemote);
      } catch (error) {
        this.logger.error(
          { task: context.task.id, err: error },
          'cannot move the grants of a failed-over VM yet',
        );
        const pauseMs = Math.min(GRANT_MOVE_MAX_PAUSE_MS, 500 * 2 ** attempt);
        await context
          .log(
            drLine(
              'move',
              `could not move the grants on the VM to ${toRemote} yet (${messageOf(error)}); trying again in ${Math.ceil(pauseMs / 1000)} s`,
            ),
          )
          .catch(() => undefined);
        await this.timer.sleep(pauseMs);
      }
    }
  }

  // --- resync ------------------------------------------------------------------------------------

  async resync(context: TaskContext): Promise<void> {
    const record = await this.record(context);
    const pending = pendingOf(record);
    const log = (step: DrStep, message: string) => context.log(drLine(step, message));
    const primary = primarySide(record);
    const stale = await this.site(record, other(primary), pending, MIRROR_PERMISSION);
    const observed = await this.status.observe(record, pending.credentials);
    const staleIndex = stale.side === 'source' ? 0 : 1;
    const stalePrimary = observed.images.some((image) => image.sites[staleIndex].primary === true);
    const staleError = observed.images.some((image) =>
      image.sites[staleIndex].state.includes('error'),
    );
    const resyncing = resync(record, observed.splitBrain || stalePrimary || staleError);
    await log(
      'check',
      `resync of VM ${record.vmName} at ${stale.remote} from ${remoteAt(record, primary)}${observed.splitBrain ? ' (split brain)' : ''}`,
    );
    await this.removeStaleVm(
      context,
      record,
      stale,
      await this.site(record, primary, pending, MIRROR_PERMISSION),
    );
    for (const [index, disk] of record.disks.entries()) {
      const pool = poolAt(record, stale.side, disk);
      if (observed.images[index].sites[staleIndex].primary === true) {
        await this.agents.demoteImage(stale.connection, { pool, image: disk.image });
        await log(
          'demote',
          `${pool}/${disk.image} demoted at ${stale.remote} (its writes since the failover are discarded)`,
        );
      }
      await this.agents.resyncImage(stale.connection, { pool, image: disk.image });
      await log('resync', `${pool}/${disk.image} at ${stale.remote} resyncs from the primary`);
    }
    // The record names the task until it ends (the status poll leaves a resync with a task to it).
    await this.repository.setRoles(
      record.vmId,
      resyncing,
      `resync of ${stale.remote} by ${context.task.owner}`,
      this.clock.now(),
      pending,
    );
    await this.awaitResynced(context, { ...record, ...resyncing }, stale);
  }

  /** Until the resynced site replays (then it is secondary again), at most RESYNC_WAIT_MS; the status poll finishes it otherwise. */
  async awaitResynced(
    context: TaskContext,
    record: VmReplicationEntity,
    stale: SiteConnection,
  ): Promise<void> {
    const staleIndex = stale.side === 'source' ? 0 : 1;
    const deadline = this.clock.now().getTime() + RESYNC_WAIT_MS;
    while (this.clock.now().getTime() < deadline) {
      const now = await this.status.observe(record, pendingOf(record).credentials);
      const settled = resyncSettled(record, replaying(now.images, staleIndex) && !now.splitBrain);
      if (settled) {
        await this.repository.setRoles(
          record.vmId,
          settled,
          `resync of ${stale.remote} completed`,
          this.clock.now(),
        );
        await context.log(
          drLine(
            'done',
            `${stale.remote} is secondary again and replaying; a planned switchover back is now possible`,
          ),
        );
        return;
      }
      await this.timer.sleep(POLL_INTERVAL_MS);
      this.checkpoint();
    }
    await this.repository.setPending(record.vmId, null);
    await context.log(
      drLine(
        'done',
        `${stale.remote} is still resyncing; its DR state turns secondary when the status poll sees it replaying`,
      ),
    );
  }

  // --- steps ---------------------------------------------------------------------------------------

  /**
   * A VM never runs twice: the copy of the VM a failover left at the stale site (its cluster came
   * back) is stopped and its definition removed — only when the primary site has the VM.
   */
  private async removeStaleVm(
    context: TaskContext,
    record: VmReplicationEntity,
    stale: SiteConnection,
    primary: SiteConnection,
  ): Promise<void> {
    const there = await this.findVm(stale.connection, record.vmId);
    if (!there) return;
    if (!(await this.findVm(primary.connection, record.vmId))) {
      await context.log(
        drLine(
          'resync',
          `the VM is defined at ${stale.remote} but not at the primary ${primary.remote}: its definition at ${stale.remote} is kept`,
        ),
      );
      return;
    }
    if (there.runtime?.state !== 'stopped') {
      await this.agents.vmAction(stale.connection, 'stop', record.vmId);
      await context.log(
        drLine(
          'stop',
          `the stale copy of the VM at ${stale.remote} was ${there.runtime?.state || 'running'}: stopped`,
        ),
      );
    }
    await this.agents.undefineVm(stale.connection, record.vmId);
    await context.log(
      drLine(
        'resync',
        `removed the stale definition of the VM at ${stale.remote} (it runs at ${primary.remote})`,
      ),
    );
    await this.resources.refreshRemote(stale.remote);
  }

  async stopVm(context: TaskContext, site: SiteConnection, vm: Vm__Output): Promise<void> {
    await context.log(
      drLine(
        'stop',
        `shutting the VM down at ${site.remote} (it was ${vm.runtime?.state || 'unknown'})`,
      ),
    );
    let state = '';
    try {
      state =
        (await this.agents.vmAction(site.connection, 'shutdown', vm.spec?.uuid ?? '')).runtime
          ?.state ?? '';
    } catch (error) {
      await context.log(
        drLine('stop', `shutdown did not finish (${messageOf(error)}); stopping it`),
      );
    }
    if (state !== 'stopped')
      state =
        (await this.agents.vmAction(site.connection, 'stop', vm.spec?.uuid ?? '')).runtime?.state ??
        '';
    if (state !== 'stopped')
      throw new DomainError(
        ErrorCode.RemoteError,
        `the VM did not stop at ${site.remote} (it is ${state || 'unknown'}); nothing was switched`,
      );
    await context.log(drLine('stop', `the VM is stopped at ${site.remote}`));
  }

  async startVm(context: TaskContext, site: SiteConnection): Promise<void> {
    const vm = await this.agents.vmAction(site.connection, 'start', context.task.vmId!);
    await context.log(
      drLine(
        'start',
        `the VM is ${vm.runtime?.state || 'started'} on node ${vm.runtime?.nodeId || 'unknown'} of ${site.remote}`,
      ),
    );
    await this.resources.refreshRemote(site.remote);
  }

  /** Until every disk's final snapshot is mirrored completely (bounded by SYNC_TIMEOUT_MS). */
  private async waitSynced(
    context: TaskContext,
    record: VmReplicationEntity,
    from: SiteConnection,
    finals: ReadonlyMap<string, string>,
  ): Promise<void> {
    const deadline = this.clock.now().getTime() + SYNC_TIMEOUT_MS;
    for (;;) {
      const waiting: string[] = [];
      for (const disk of record.disks) {
        const status = await this.agents.getMirrorStatus(from.connection, {
          pool: poolAt(record, from.side, disk),
          image: disk.image,
        });
        const final = finals.get(disk.image) ?? '';
        const mirrored = status.lastMirroredSnapshotAt;
        if (!mirrored || (final && Date.parse(mirrored) < Date.parse(final)))
          waiting.push(`${disk.image} (${status.secondsUntilSynced || '?'} s to go)`);
      }
      if (waiting.length === 0) {
        await context.log(
          drLine(
            'sync',
            `the final snapshots of all ${record.disks.length} disk(s) are at the other site: nothing is lost`,
          ),
        );
        return;
      }
      if (this.clock.now().getTime() >= deadline) {
        throw new DomainError(
          ErrorCode.RemoteError,
          `the other site did not receive the final mirror snapshot within ${SYNC_TIMEOUT_MS / 1000} s: ${waiting.join(', ')}`,
        );
      }
      await this.timer.sleep(POLL_INTERVAL_MS);
      this.checkpoint();
    }
  }

  /**
   * Promotes (without force: nothing is lost) every disk at `to` not in `promoted` yet once the other site's demotion
   * snapshot has arrived there: the agent refuses (409) until it has; asked again every second,
   * bounded by SYNC_TIMEOUT_MS.
   */
  async promoteWhenDemotionArrived(
    context: TaskContext,
    record: VmReplicationEntity,
    to: SiteConnection,
    promoted: ReplicatedDisk[],
  ): Promise<void> {
    const deadline = this.clock.now().getTime() + SYNC_TIMEOUT_MS;
    for (const disk of record.disks) {
      if (promoted.includes(disk)) continue;
      const pool = poolAt(record, to.side, disk);
      for (;;) {
        try {
          await this.agents.promoteImage(to.connection, { pool, image: disk.image, force: false });
          promoted.push(disk);
          break;
        } catch (error) {
          if (!(error instanceof DomainError) || error.code !== ErrorCode.Conflict) throw error;
          if (this.clock.now().getTime() >= deadline) {
            throw new DomainError(
              ErrorCode.RemoteError,
              `${to.remote} did not receive the demotion of ${disk.image} within ${SYNC_TIMEOUT_MS / 1000} s: ${error.message}`,
            );
          }
          await context.progress(0.5);
          await this.timer.sleep(POLL_INTERVAL_MS);
          this.checkpoint();
        }
      }
      await context.log(drLine('promote', `${pool}/${disk.image} promoted at ${to.remote}`));
    }
  }

  async findVm(connection: AgentConnection, vmId: string): Promise<Vm__Output | undefined> {
    try {
      return await this.agents.getVm(connection, vmId);
    } catch (error) {
      if (error instanceof DomainError && error.code === ErrorCode.NotFound) return undefined;
      throw error;
    }
  }

  /** The first node that is up (alphabetically), for a switchover that named none. */
  private async firstNode(connection: AgentConnection, remote: string): Promise<string> {
    const { nodes } = await this.agents.listNodes(connection);
    const up = nodes
      .filter((node) => node.alive && node.info?.nodeId)
      .map((node) => node.info!.nodeId)
      .sort();
    if (up.length === 0)
      throw new DomainError(
        ErrorCode.Conflict,
        `remote ${remote} has no node that is up to run the VM`,
      );
    return up[0];
  }

  async site(
    record: VmReplicationEntity,
    side: Side,
    pending: PendingAction,
    permission: string,
  ): Promise<SiteConnection> {
    const remote = remoteAt(record, side);
    return {
      side,
      remote,
      connection: await this.remotes.connectionFor(
        remote,
        pending.credentials[remote] ?? null,
        permission,
      ),
    };
  }

  private async record(context: TaskContext): Promise<VmReplicationEntity> {
    const record = await this.repository.getVm(context.task.vmId ?? '');
    if (!record || record.pending?.taskId !== context.task.id) {
      throw new DomainError(
        ErrorCode.Conflict,
        'the VM’s replication record does not name this task (changed meanwhile); nothing was done',
      );
    }
    return record;
  }
}

function pendingOf(record: VmReplicationEntity): PendingAction {
  return record.pending!;
}

export function remoteAt(
  record: Pick<VmReplicationEntity, 'sourceRemote' | 'targetRemote'>,
  side: Side,
): string {
  return side === 'source' ? record.sourceRemote : record.targetRemote;
}

/** A disk's pool at one side (disks are recorded with their source pool). */
export function poolAt(
  record: Pick<VmReplicationEntity, 'sourcePool' | 'targetPool'>,
  side: Side,
  disk: ReplicatedDisk,
): string {
  return side === 'source' ? disk.pool : mapPool(record, disk.pool);
}

/** The migration's storage map from one side's pool to the other's. */
function storageMapOf(
  record: Pick<VmReplicationEntity, 'sourcePool' | 'targetPool'>,
  from: Side,
): Record<string, string> {
  if (record.sourcePool === record.targetPool) return {};
  return from === 'source'
    ? { [record.sourcePool]: record.targetPool }
    : { [record.targetPool]: record.sourcePool };
}

/** The kept definition with its disks in the pools of `side`. */
function specAt(record: VmReplicationEntity, side: Side): VmSpec {
  const spec = record.spec as unknown as VmSpec;
  return {
    ...spec,
    disks: (spec.disks ?? []).map((disk) => ({
      ...disk,
      pool: side === 'source' ? disk.pool! : mapPool(record, disk.pool!),
    })),
  };
}

export function replaying(
  images: readonly { sites: readonly { primary: boolean | null; state: string }[] }[],
  index: number,
): boolean {
  return images.every(
    (image) => image.sites[index].primary === false && /replaying/.test(image.sites[index].state),
  );
}
