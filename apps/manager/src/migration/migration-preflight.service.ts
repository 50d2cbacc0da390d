import type {
  MigrationDisk__Output,
  PrepareMigrationRequest,
  PreflightCheck__Output,
  Vm__Output,
  VmSpec__Output,
} from '@debvisor/proto';
import { Injectable } from '@nestjs/common';
import { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { MigrationOptions } from '../task-details/migration-details.dto';
import type { PreflightCheckView } from './migration.dto';

/** One migration as asked for: the VM, both ends and the options with their defaults filled in. */
export interface MigrationPlan {
  readonly vmId: string;
  readonly sourceRemote: string;
  readonly targetRemote: string;
  readonly targetNode: string;
  readonly options: MigrationOptions;
}

/** How to call each end (the same connection twice within one remote). */
export interface MigrationEnds {
  readonly source: AgentConnection;
  readonly target: AgentConnection;
}

/** The VM read at its source, before any check. */
export interface LocatedVm {
  readonly vm: Vm__Output;
  readonly spec: VmSpec__Output;
  readonly sourceNode: string;
}

export interface PreflightResult {
  /** The VM as its source agent sees it now. */
  readonly vm: Vm__Output;
  readonly sourceNode: string;
  /** The spec the target is given (the source's current one). */
  readonly spec: VmSpec__Output;
  readonly sourceCpu: { readonly model: string; readonly flags: readonly string[] };
  /** The source's disks with their mirroring: across remotes the target proves its images are their mirrors. */
  readonly sourceDisks: readonly MigrationDisk__Output[];
  readonly checks: PreflightCheckView[];
  readonly ok: boolean;
}

/**
 * The pre-flight of a migration, for the pre-flight route and the task's first phase: the VM read
 * at its source, the manager's own checks, then PrepareMigration with check_only at the source and
 * at the target (given the source's spec and CPU). Nothing is reserved.
 */
@Injectable()
export class MigrationPreflightService {
  constructor(private readonly agents: AgentClientRepository) {}

  /**
   * `checkTarget: false` leaves the target's checks out: the migration task has the target check
   * and prepare in one call (PrepareMigration without check_only refuses with its failed checks
   * and reserves nothing), which saves a round trip and starts the incoming QEMU sooner.
   */
  async run(
    plan: MigrationPlan,
    ends: MigrationEnds,
    managerChecks: PreflightCheckView[] = [],
    { checkTarget = true }: { checkTarget?: boolean } = {},
  ): Promise<PreflightResult> {
    return this.check(plan, ends, await this.locate(plan, ends), managerChecks, { checkTarget });
  }

  /** The VM as its source remote answers (GetVm), with the node that runs it. */
  async locate(plan: MigrationPlan, ends: MigrationEnds): Promise<LocatedVm> {
    const vm = await this.agents.getVm(ends.source, plan.vmId);
    const sourceNode = vm.runtime?.nodeId ?? '';
    if (!vm.spec || !sourceNode)
      throw new DomainError(
        ErrorCode.RemoteError,
        `remote ${plan.sourceRemote} did not say which node runs VM ${plan.vmId}`,
      );
    return { vm, spec: vm.spec, sourceNode };
  }

  /** The checks of a located VM: the manager's, the source's (check_only) and, unless left out, the target's. */
  async check(
    plan: MigrationPlan,
    ends: MigrationEnds,
    located: LocatedVm,
    managerChecks: PreflightCheckView[] = [],
    { checkTarget = true }: { checkTarget?: boolean } = {},
  ): Promise<PreflightResult> {
    const { vm, sourceNode } = located;
    const checks: PreflightCheckView[] = [...managerChecks];
    if (plan.sourceRemote === plan.targetRemote && plan.targetNode === sourceNode) {
      checks.push({
        side: 'manager',
        name: 'target-node',
        result: 'fail',
        reason: `the VM already runs on node ${sourceNode}; choose another node (or another remote)`,
      });
    }
    const source = await this.agents.prepareMigration(ends.source, {
      ...this.common(plan),
      vm: located.spec,
      role: 'source',
      checkOnly: true,
      sourceNodeId: sourceNode,
    });
    checks.push(...source.checks.map((check) => checkView('source', check)));
    const spec = source.vmState?.spec ?? located.spec;
    const sourceCpu = { model: source.cpuModel, flags: source.cpuFlags };
    const sourceDisks = source.disks ?? [];
    if (checkTarget) {
      const target = await this.agents.prepareMigration(
        ends.target,
        this.targetRequest(plan, ends, { spec, sourceNode, sourceCpu, sourceDisks }, '', true),
      );
      checks.push(...target.checks.map((check) => checkView('target', check)));
    }
    return {
      vm,
      sourceNode,
      spec,
      sourceCpu,
      sourceDisks,
      checks,
      ok: !checks.some((check) => check.result === 'fail'),
    };
  }

  /** The target's PrepareMigration: a pre-flight (checkOnly) or the reservation named `migrationId`. */
  targetRequest(
    plan: MigrationPlan,
    ends: MigrationEnds,
    found: Pick<PreflightResult, 'spec' | 'sourceNode' | 'sourceCpu'> &
      Partial<Pick<PreflightResult, 'sourceDisks'>>,
    migrationId: string,
    checkOnly: boolean,
  ): PrepareMigrationRequest {
    return {
      ...this.common(plan),
      vm: found.spec,
      role: 'target',
      checkOnly,
      migrationId,
      sourceNodeId: found.sourceNode,
      // Across remotes the target pins the source cluster's CA for the tunnel; within one it trusts its own.
      sourceCaPem: plan.sourceRemote === plan.targetRemote ? '' : ends.source.caCertPem,
      sourceCpuModel: found.sourceCpu.model,
      sourceCpuFlags: [...found.sourceCpu.flags],
      sourceDisks: [...(found.sourceDisks ?? [])],
    };
  }

  private common(plan: MigrationPlan): PrepareMigrationRequest {
    return {
      targetNodeId: plan.targetNode,
      storageMap: plan.options.storageMap,
      networkMap: plan.options.networkMap,
      online: plan.options.online,
      transport: plan.options.transport,
      allowPostcopy: plan.options.allowPostcopy || plan.options.mode === 'postcopy',
    };
  }
}

/** An agent's check as the manager shows it; a result it does not know counts as a failure. */
export function checkView(
  side: 'source' | 'target',
  check: PreflightCheck__Output,
): PreflightCheckView {
  const result = check.result === 'pass' || check.result === 'warn' ? check.result : 'fail';
  return { side, name: check.name, result, reason: check.reason };
}

/** "target memory: …; source vm-state: …" — the failing checks, for a task's error. */
export function failingChecks(checks: readonly PreflightCheckView[]): string {
  return checks
    .filter((check) => check.result === 'fail')
    .map((check) => `${check.side} ${check.name}: ${check.reason}`)
    .join('; ');
}
