import { Injectable, OnModuleInit } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { remoteAclPath, vmAclPath } from '../authz/acl-paths';
import { ownerPrincipal, type Caller } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import { RemotesService } from '../remotes/remotes.service';
import { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import type { TaskDetails } from '../tasks/tasks.dto';
import { TasksService, type TaskContext } from '../tasks/tasks.service';
import type { MigrationDetails, MigrationOptions } from '../task-details/migration-details.dto';
import { isFinalPhase, journalOf, type MigrationPhase } from './migration-journal';
import {
  MigrationPreflightService,
  type MigrationEnds,
  type MigrationPlan,
} from './migration-preflight.service';
import { MigrationLinks } from './migration-links.service';
import { MigrationRecoveryService } from './migration-recovery.service';
import { MigrationRunnerService } from './migration-runner.service';
import type { MigrateBody, PreflightAnswer, PreflightCheckView } from './migration.dto';
import { MigrationRepository } from './migration.repository';
import { MEASURED_MIGRATIONS, transferEstimate } from './transfer-estimate';

export const MIGRATION_TASK = 'vm.migrate';

/** What the caller may use: the plan and the credentials each end is acted on with. */
interface Authorized {
  readonly plan: MigrationPlan;
  readonly sourceCredentialId: string | null;
  readonly targetCredentialId: string | null;
}

/**
 * Migrations as the API offers them: a pre-flight of both ends, and the migration itself as a
 * persisted, exclusive task (one operation per VM) carried out by MigrationRunnerService and settled
 * after a restart by MigrationRecoveryService. Needs vm.migrate on the VM (the route) and on the
 * target remote (here).
 */
@Injectable()
export class MigrationService implements OnModuleInit {
  constructor(
    private readonly tasks: TasksService,
    private readonly remotes: RemotesService,
    private readonly resources: ResourcesService,
    private readonly policy: AccessPolicy,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
    private readonly repository: MigrationRepository,
    private readonly preflightService: MigrationPreflightService,
    private readonly runner: MigrationRunnerService,
    private readonly recovery: MigrationRecoveryService,
    private readonly links: MigrationLinks,
  ) {}

  onModuleInit(): void {
    this.tasks.registerHandler(MIGRATION_TASK, {
      exclusive: true,
      // The agent calls a task makes are recorded as its owner's.
      run: (context) =>
        this.audit.runAs(ownerPrincipal(context.task.owner), () => this.runner.run(context)),
      resume: (context) =>
        this.audit.runAs(ownerPrincipal(context.task.owner), () => this.recovery.resume(context)),
      suspend: () => this.runner.suspend(),
      cancel: (task, by) => this.runner.cancel(task, by),
      details: (task) => this.details(task),
      afterInterrupted: (task) => {
        // Queued when the manager stopped: never started, but the cache should show the VM as it is.
        if (task.remoteId) void this.resources.refreshRemote(task.remoteId);
      },
    });
  }

  /** Both ends' checks (nothing is reserved): what the wizard shows before the caller commits. */
  async preflight(
    caller: Caller,
    remoteId: string,
    vmId: string,
    body: MigrateBody,
  ): Promise<PreflightAnswer> {
    const { plan, sourceCredentialId, targetCredentialId } = await this.authorize(
      caller,
      remoteId,
      vmId,
      body,
    );
    const ends = await this.ends(plan, sourceCredentialId, targetCredentialId);
    const busy = await this.repository.activeTaskOf(vmId);
    const managerChecks: PreflightCheckView[] = [
      busy
        ? {
            side: 'manager',
            name: 'vm-operation',
            result: 'fail',
            reason: `the VM is busy with task ${busy.id} (${busy.type}, ${busy.state}); one operation per VM at a time`,
          }
        : {
            side: 'manager',
            name: 'vm-operation',
            result: 'pass',
            reason: 'no other task of the manager is working on the VM',
          },
    ];
    const result = await this.preflightService.run(plan, ends, managerChecks);
    const memoryBytes = plan.options.online ? Number(result.spec.memoryBytes) || 0 : 0;
    const estimate = transferEstimate(
      memoryBytes,
      await this.repository.recentTransfers(
        plan.sourceRemote,
        plan.targetRemote,
        MEASURED_MIGRATIONS,
      ),
      plan.options.bandwidthLimitBytes,
      this.links.capOf(plan.sourceRemote, plan.targetRemote),
    );
    this.audit.note({
      targetRemote: plan.targetRemote,
      targetNode: plan.targetNode,
      ok: result.ok,
    });
    return {
      ok: result.ok,
      source: { remote: plan.sourceRemote, node: result.sourceNode },
      target: { remote: plan.targetRemote, node: plan.targetNode },
      transport: plan.options.transport,
      checks: result.checks,
      estimate,
    };
  }

  /** Queues the migration task (202): 409 while the VM has another task; the task does the rest. */
  async request(
    caller: Caller,
    remoteId: string,
    vmId: string,
    body: MigrateBody,
  ): Promise<{ taskId: string }> {
    const { plan, sourceCredentialId, targetCredentialId } = await this.authorize(
      caller,
      remoteId,
      vmId,
      body,
    );
    // Refuses now (403) when a credential may not migrate on its cluster, rather than in the task.
    await this.ends(plan, sourceCredentialId, targetCredentialId);
    const accepted = await this.tasks.enqueue(
      {
        type: MIGRATION_TASK,
        remoteId,
        vmId,
        owner: caller.display,
        credentialId: sourceCredentialId,
      },
      {
        prepare: async (taskId) => {
          const now = this.clock.now();
          await this.repository.insert({
            taskId,
            vmId,
            sourceRemote: plan.sourceRemote,
            sourceNode: null,
            targetRemote: plan.targetRemote,
            targetNode: plan.targetNode,
            targetCredentialId,
            options: plan.options,
            phase: 'preflight',
            progress: null,
            createdAt: now,
            transferStartedAt: null,
            finishedAt: null,
            updatedAt: now,
          });
        },
      },
    );
    this.audit.note({
      taskId: accepted.taskId,
      targetRemote: plan.targetRemote,
      targetNode: plan.targetNode,
      online: plan.options.online,
      transport: plan.options.transport,
      mode: plan.options.mode,
    });
    return accepted;
  }

  /**
   * Moves a stopped VM's definition to another remote inside another feature's task (a DR
   * switchover, after its disks were promoted there): the same offline migration as POST …/migrate
   * with online=false — pre-flight of both ends, the target's reservation, MigrateVm with offline —
   * recorded under that task's id and journalled into its log. Throws like the migration task.
   * Asked again after a manager restart interrupted the task's move (the VM still at the source),
   * the target's reservation of that move is released first and its record replaced.
   */
  async moveStoppedVm(
    context: TaskContext,
    move: {
      vmId: string;
      sourceRemote: string;
      sourceCredentialId: string | null;
      targetRemote: string;
      targetNode: string;
      targetCredentialId: string | null;
      storageMap: Record<string, string>;
    },
  ): Promise<void> {
    const task = { ...context.task, credentialId: move.sourceCredentialId };
    const previous = await this.repository.get(context.task.id);
    if (previous?.phase === 'prepare' || previous?.phase === 'transfer')
      await this.runner.releaseInterrupted({ ...context, task }, previous);
    const now = this.clock.now();
    const options: MigrationOptions = {
      online: false,
      transport: move.sourceRemote === move.targetRemote ? 'direct' : 'tunnel',
      mode: 'precopy',
      autoConverge: false,
      allowPostcopy: false,
      downtimeLimitMs: 300,
      bandwidthLimitBytes: 0,
      completionTimeoutSecondsPerGib: 60,
      storageMap: { ...move.storageMap },
      networkMap: {},
    };
    await this.repository.upsert({
      taskId: context.task.id,
      vmId: move.vmId,
      sourceRemote: move.sourceRemote,
      sourceNode: null,
      targetRemote: move.targetRemote,
      targetNode: move.targetNode,
      targetCredentialId: move.targetCredentialId,
      options,
      phase: 'preflight',
      progress: null,
      createdAt: now,
      transferStartedAt: null,
      finishedAt: null,
      updatedAt: now,
    });
    await this.runner.run({ ...context, task });
  }

  /** The migration of a vm.migrate task, for GET /api/v1/tasks/{id}. */
  async details(task: Readonly<TaskEntity>): Promise<TaskDetails> {
    const record = await this.repository.get(task.id);
    if (!record) return {};
    const migration: MigrationDetails = {
      phase: phaseShown(record.phase, task),
      vm: record.vmId,
      source: { remote: record.sourceRemote, node: record.sourceNode },
      target: { remote: record.targetRemote, node: record.targetNode },
      options: record.options,
      progress: record.progress,
      journal: journalOf(task.log),
      createdAt: record.createdAt.toISOString(),
      transferStartedAt: record.transferStartedAt?.toISOString() ?? null,
      finishedAt: record.finishedAt?.toISOString() ?? null,
      updatedAt: record.updatedAt.toISOString(),
    };
    return { migration };
  }

  /**
   * vm.migrate on the VM (which credential acts on the source) and on the target remote's path
   * (which credential acts there); 403 before anything about the target is revealed, then 404 for
   * an unknown remote.
   */
  private async authorize(
    caller: Caller,
    remoteId: string,
    vmId: string,
    body: MigrateBody,
  ): Promise<Authorized> {
    await this.remotes.get(remoteId);
    const sourceCredentialId = this.policy.credentialFor(
      caller,
      'vm.migrate',
      vmAclPath(remoteId, vmId),
      remoteId,
    );
    const targetRemote = body.targetRemote ?? remoteId;
    const targetCredentialId = this.policy.credentialFor(
      caller,
      'vm.migrate',
      remoteAclPath(targetRemote),
      targetRemote,
    );
    if (targetRemote !== remoteId) await this.remotes.get(targetRemote);
    const options: MigrationOptions = {
      online: body.online,
      transport: body.transport ?? (targetRemote === remoteId ? 'direct' : 'tunnel'),
      mode: body.mode,
      autoConverge: body.autoConverge,
      allowPostcopy: body.allowPostcopy,
      downtimeLimitMs: body.downtimeLimitMs,
      bandwidthLimitBytes: body.bandwidthLimitBytes,
      completionTimeoutSecondsPerGib: body.completionTimeoutSecondsPerGib,
      storageMap: { ...body.storageMap },
      networkMap: { ...body.networkMap },
    };
    return {
      plan: { vmId, sourceRemote: remoteId, targetRemote, targetNode: body.targetNode, options },
      sourceCredentialId,
      targetCredentialId,
    };
  }

  private ends(
    plan: MigrationPlan,
    sourceCredentialId: string | null,
    targetCredentialId: string | null,
  ): Promise<MigrationEnds> {
    return this.runner.connect(
      { remote: plan.sourceRemote, credentialId: sourceCredentialId },
      { remote: plan.targetRemote, credentialId: targetCredentialId },
    );
  }
}

/** A task that ended without its runner (cancelled while queued, failed by a restart) shows its own end. */
function phaseShown(phase: MigrationPhase, task: Readonly<TaskEntity>): MigrationPhase {
  if (isFinalPhase(phase) || task.state === 'queued' || task.state === 'running') return phase;
  return task.state === 'succeeded' ? 'completed' : task.state;
}
