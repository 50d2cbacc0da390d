import { Injectable, OnModuleInit } from '@nestjs/common';
import { VM_ACTIONS, type VmAction } from '../agents/agent-connection';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { vmAclPath } from '../authz/acl-paths';
import { ownerPrincipal, type Caller } from '../authz/caller';
import { RemotesService } from '../remotes/remotes.service';
import { ResourcesService } from '../resources/resources.service';
import type { TaskContext } from '../tasks/tasks.service';
import { TasksService } from '../tasks/tasks.service';

/** The cluster permission of the agents' power RPCs (apps/agent/src/rpc/permissions.ts). */
const VM_POWER_PERMISSION = 'vm:instance:power';

const PAST: Record<VmAction, string> = {
  start: 'started',
  shutdown: 'shut down',
  reboot: 'rebooted',
  stop: 'stopped',
};

/** VM power actions as tasks: accepted at once (202 + task id), carried out by the task worker. */
@Injectable()
export class VmPowerService implements OnModuleInit {
  constructor(
    private readonly tasks: TasksService,
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly resources: ResourcesService,
    private readonly audit: AuditService,
    private readonly policy: AccessPolicy,
  ) {}

  onModuleInit(): void {
    for (const action of VM_ACTIONS) {
      this.tasks.registerHandler(`vm.${action}`, {
        // The agent calls a task makes are recorded as its owner's.
        run: (context) =>
          this.audit.runAs(ownerPrincipal(context.task.owner), () =>
            this.carryOut(action, context),
          ),
        afterInterrupted: (task) => {
          if (task.remoteId) void this.resources.refreshRemote(task.remoteId);
        },
      });
    }
  }

  /** Checks the remote exists and queues the action; the agent decides whether the VM exists. */
  async request(
    caller: Caller,
    remoteId: string,
    vmId: string,
    action: VmAction,
  ): Promise<{ taskId: string }> {
    await this.remotes.get(remoteId);
    // A right that comes from a remote group acts with that group's credential, within what the credential may do.
    const credentialId = this.policy.credentialFor(
      caller,
      'vm.power',
      vmAclPath(remoteId, vmId),
      remoteId,
    );
    await this.remotes.connectionFor(remoteId, credentialId, VM_POWER_PERMISSION);
    const accepted = await this.tasks.enqueue({
      type: `vm.${action}`,
      remoteId,
      vmId,
      owner: caller.display,
      credentialId,
    });
    this.audit.note({ taskId: accepted.taskId });
    return accepted;
  }

  private async carryOut(action: VmAction, context: TaskContext): Promise<void> {
    const remoteId = context.task.remoteId!;
    const vmId = context.task.vmId!;
    const known = this.resources.cachedVm(remoteId, vmId);
    await context.log(
      `asking remote ${remoteId} to ${action} VM ${known ? `${known.name} (${vmId})` : vmId}`,
    );
    try {
      const connection = await this.remotes.connectionFor(
        remoteId,
        context.task.credentialId,
        VM_POWER_PERMISSION,
      );
      const vm = await this.agents.vmAction(connection, action, vmId);
      await context.log(
        `VM ${PAST[action]}: now ${vm.runtime?.state || 'unknown'} on node ${vm.runtime?.nodeId || 'unknown'}`,
      );
    } finally {
      // Whatever happened, the cache should show the VM as it is now.
      await this.resources.refreshVm(remoteId, vmId);
    }
  }
}
