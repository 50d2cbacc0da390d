import type {
  MigrateVmRequest,
  PrepareMigrationResponse__Output,
  VmSpec__Output,
} from '@debvisor/proto';
import { Injectable } from '@nestjs/common';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { TaskEntity } from '../tasks/task.entity';
import type { TaskContext } from '../tasks/tasks.service';
import type { InFlightMigration } from './in-flight-migration';
import { InFlightMigrations, type EndCredential } from './in-flight-migrations.service';
import {
  checkView,
  failingChecks,
  MigrationPreflightService,
  type MigrationEnds,
  type MigrationPlan,
  type PreflightResult,
} from './migration-preflight.service';
import { MigrationLinks, type LinkLease } from './migration-links.service';
import type { PreflightCheckView } from './migration.dto';
import type { VmMigrationEntity } from './migration.entity';

export { MIGRATE_PERMISSION } from './in-flight-migrations.service';

/**
 * Carries out one migration task: pre-flight on both ends, the target's reservation (its one-time
 * cookie goes from the target's answer straight into the source's request and nowhere else), then
 * the source's transfer, which the in-flight migration follows and settles — caches refreshed,
 * grants moved to the new remote, or the target's side released and the VM's true whereabouts
 * written into the task. The migration's state lives in its InFlightMigration, owned by
 * InFlightMigrations; this service only drives the phases.
 */
@Injectable()
export class MigrationRunnerService {
  /** The CPU each source node reported, by remote and node (see carryOut). */
  private readonly sourceCpus = new Map<string, PreflightResult['sourceCpu']>();

  constructor(
    private readonly inFlight: InFlightMigrations,
    private readonly preflight: MigrationPreflightService,
    private readonly agents: AgentClientRepository,
    private readonly links: MigrationLinks,
  ) {}

  run(context: TaskContext): Promise<void> {
    return this.inFlight.carry(context, (migration) => this.carryOut(migration));
  }

  /**
   * Asks the migration to stop. Before the transfer the task stops at the next step; during it the
   * source is asked (CancelMigration) and the task ends when its stream says how it ended. 409 when
   * the source answers that it is past the point of no return.
   */
  cancel(task: Readonly<TaskEntity>, by: string): Promise<void> {
    return this.inFlight.cancel(task, by);
  }

  /** At shutdown: every migration lets go (its task stays running; the next start settles it). */
  suspend(): void {
    this.inFlight.suspend();
  }

  /**
   * Connections to both ends with these credentials (one connection when they are the same); 403
   * when a credential's cluster permissions do not allow migrating.
   */
  connect(source: EndCredential, target: EndCredential): Promise<MigrationEnds> {
    return this.inFlight.connect(source, target);
  }

  /**
   * Before a task moves its VM again (a DR task resumed after a restart, the VM still at the
   * source): the target's reservation of the move the restart interrupted is released, so that it
   * does not hold the VM until its one-time credential expires. Best effort, journalled.
   */
  releaseInterrupted(context: TaskContext, record: VmMigrationEntity): Promise<void> {
    return this.inFlight.carry(
      context,
      async (migration) => {
        await migration.connect();
        await migration.journal(
          record.phase,
          `releasing the target's side of the move a manager restart interrupted (${record.phase})`,
        );
        await migration.releaseTarget();
      },
      record,
    );
  }

  // --- the phases -------------------------------------------------------------------------------

  private async carryOut(migration: InFlightMigration): Promise<void> {
    const { record } = migration;
    const options = record.options;
    const plan: MigrationPlan = {
      vmId: record.vmId,
      sourceRemote: record.sourceRemote,
      targetRemote: record.targetRemote,
      targetNode: record.targetNode,
      options,
    };
    let where = 'nothing was changed';
    let lease: LinkLease | undefined;
    let early: Promise<PrepareMigrationResponse__Output> | undefined;
    /** Phase records written while the migration goes on; all are in before the transfer. */
    const recorded: Promise<void>[] = [];
    const recording = (written: Promise<void>) => {
      written.catch(() => undefined); // awaited below; never an unhandled rejection meanwhile
      recorded.push(written);
    };
    try {
      await migration.connect();
      migration.timeline.mark('manager: connected');
      await migration.journal(
        'preflight',
        `checking both ends: VM ${record.vmId} of remote ${record.sourceRemote} to node ${record.targetNode} of remote ${record.targetRemote} (${options.online ? 'live' : 'offline'}, ${options.transport}, ${options.mode})`,
      );
      const located = await this.preflight.locate(plan, migration.ends);
      migration.timeline.mark('manager: VM located');
      // From here each end is called at its own node (no hop through another agent).
      const ends = migration.aim(located.sourceNode);
      recording(migration.enter('preflight', { sourceNode: located.sourceNode }));
      where = `the VM was not moved: it is still ${located.vm.runtime?.state || 'where it was'} on node ${located.sourceNode} of remote ${record.sourceRemote}`;

      // The link's share is taken before the target reserves anything (a wait holds nothing there).
      lease = await this.links.lease(
        record.sourceRemote,
        record.targetRemote,
        record.taskId,
        options.bandwidthLimitBytes,
        {
          signal: migration.stopSignal,
          onWait: (note) => migration.journal('preflight', note),
        },
      );
      migration.checkpoint();
      const cap = this.links.capOf(record.sourceRemote, record.targetRemote);
      if (lease && cap !== null)
        await migration.journal(
          'preflight',
          `bandwidth: at most ${lease.bytesPerSecond} bytes/s (the link's cap is ${cap} bytes/s)`,
        );

      // Within one remote, from a node whose CPU is known, the target checks and prepares its
      // incoming QEMU while the source checks (the target's checks are pre-flight checks too).
      const cpuKey = `${record.sourceRemote}/${located.sourceNode}`;
      const knownCpu =
        record.sourceRemote === record.targetRemote ? this.sourceCpus.get(cpuKey) : undefined;
      const prepareTarget = async (facts: TargetFacts, alongside: string) => {
        // Recorded while the target prepares: a restart before it is written leaves an unclaimed
        // reservation, which ends when its one-time credential expires.
        recording(migration.enter('prepare'));
        await migration.journal(
          'prepare',
          `asking node ${record.targetNode} of remote ${record.targetRemote} to check and prepare the incoming side${alongside}`,
        );
        migration.timeline.mark('manager: target PrepareMigration');
        const prepared = await this.agents.prepareMigration(
          ends.target,
          this.preflight.targetRequest(plan, ends, facts, record.taskId, false),
        );
        migration.timeline.mark('manager: target prepared');
        return prepared;
      };
      if (knownCpu) {
        early = prepareTarget(
          { spec: located.spec, sourceNode: located.sourceNode, sourceCpu: knownCpu },
          ' while the source checks',
        );
        early.catch(() => undefined); // awaited below, or before the failure is handled
      }
      migration.timeline.mark('manager: source PrepareMigration');
      const found = await this.preflight.check(plan, ends, located, [], { checkTarget: false });
      migration.timeline.mark('manager: source checked');
      this.sourceCpus.set(cpuKey, found.sourceCpu);
      await this.journalChecks(migration, found.checks);
      if (!found.ok)
        throw new DomainError(
          ErrorCode.Conflict,
          `pre-flight failed: ${failingChecks(found.checks)}`,
        );
      migration.checkpoint();

      let reservation = early && (await early);
      if (reservation && !sameFacts(knownCpu!, located.spec, found)) {
        // The source's CPU or the VM changed since: what the target prepared rests on old facts.
        if (reservation.cookie) await migration.releaseTarget();
        reservation = undefined;
      }
      reservation ??= await prepareTarget(found, '');
      const targetChecks = reservation.checks.map((check) => checkView('target', check));
      await this.journalChecks(migration, targetChecks);
      if (!reservation.ok)
        throw new DomainError(
          ErrorCode.Conflict,
          `pre-flight failed: ${failingChecks(targetChecks) || 'the target gave no reason'}`,
        );
      if (!reservation.cookie)
        throw new DomainError(ErrorCode.Conflict, 'the target prepared nothing: it gave no reason');
      await migration.journal(
        'preflight',
        `all ${found.checks.length + targetChecks.length} checks passed on node ${found.sourceNode} and node ${record.targetNode}`,
      );
      await migration.journal(
        'prepare',
        `node ${reservation.nodeId || record.targetNode} is ready to receive; its one-time credential expires at ${reservation.cookieExpiresAt || 'soon'}`,
      );
      migration.checkpoint();

      await Promise.all(recorded);
      await migration.enter('transfer');
      await migration.journal(
        'transfer',
        `asking node ${found.sourceNode} of remote ${record.sourceRemote} to ${options.online ? 'migrate the running VM' : 'move the stopped VM'}`,
      );
      // The cookie lives only in this request object, which goes to the source agent and is then dropped.
      const request: MigrateVmRequest = {
        uuid: record.vmId,
        migrationId: record.taskId,
        targetEndpoint: reservation.endpoint,
        cookie: reservation.cookie,
        transport: options.transport,
        mode: options.mode,
        autoConverge: options.autoConverge,
        downtimeLimitMs: options.downtimeLimitMs,
        bandwidthLimitBytes: String(lease?.bytesPerSecond ?? options.bandwidthLimitBytes),
        completionTimeoutSecondsPerGib: options.completionTimeoutSecondsPerGib,
        allowPostcopy: options.allowPostcopy,
        targetCaPem: reservation.caPem || ends.target.caCertPem,
        targetNodeId: reservation.nodeId || record.targetNode,
        offline: !options.online,
        targetDataEndpoint: reservation.dataEndpoint,
      };
      await migration.transfer(request);
    } catch (error) {
      // a reservation still on its way is settled first, so that a failure releases it
      await early?.catch(() => undefined);
      await Promise.allSettled(recorded);
      return migration.fail(error, where);
    } finally {
      lease?.release();
    }
  }

  /** The checks that did not pass, one journal line each. */
  private async journalChecks(
    migration: InFlightMigration,
    checks: readonly PreflightCheckView[],
  ): Promise<void> {
    for (const check of checks)
      if (check.result !== 'pass')
        await migration.journal(
          'preflight',
          `${check.side} ${check.name}: ${check.result} — ${check.reason}`,
        );
  }
}

/** What the target is prepared with: the VM's spec, the source node and its CPU. */
type TargetFacts = Pick<PreflightResult, 'spec' | 'sourceNode' | 'sourceCpu'>;

/** The source's answer confirms what the target was prepared with ahead of it. */
function sameFacts(
  cpu: PreflightResult['sourceCpu'],
  spec: VmSpec__Output,
  found: PreflightResult,
): boolean {
  return (
    cpu.model === found.sourceCpu.model &&
    JSON.stringify(cpu.flags) === JSON.stringify(found.sourceCpu.flags) &&
    JSON.stringify(spec) === JSON.stringify(found.spec)
  );
}
