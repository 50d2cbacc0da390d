import { ALL_PRIVILEGES, type Privilege } from '@debvisor/permissions';
import type { HaStatus__Output } from '@debvisor/proto';
import { Injectable } from '@nestjs/common';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { remoteAclPath } from '../authz/acl-paths';
import type { Caller } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { RemotesService } from '../remotes/remotes.service';
import { HaEpisodesService } from './ha-episodes.service';
import { HA_READ_PERMISSION, HaPollerService } from './ha-poller.service';
import { nodesById, summarize, toNodeView, toVmView, zeroCounts } from './ha-state';
import {
  HA_NODE_STATES,
  HA_VM_STATES,
  type HaNodeView,
  type HaOverview,
  type HaPolicyBody,
  type RemoteHa,
  type VmHa,
} from './ha.dto';

/** Cluster permissions of the agents' HaService (apps/agent/src/rpc/permissions.ts). */
const HA_POLICY_PERMISSION = 'ha:policy:write';
const HA_MAINTENANCE_PERMISSION = 'ha:node:maintenance';

const remotePath = (remote: string) => remoteAclPath(remote);
const vmPath = (remote: string, vm: string) =>
  `${remotePath(remote)}/vms/${encodeURIComponent(vm)}`;

/**
 * High availability as the API offers it. Reads go to the remote's agents now (any agent answers
 * from the cluster's etcd) with the credential the caller's right comes with; the overview comes
 * from the last HA poll. Changes — a VM's policy, a node's maintenance — are the cluster's to
 * carry out: the manager asks, with vm.ha or node.maintenance, and a drain is followed as an
 * ha.drain task. The manager keeps no copy of a policy: the cluster's etcd is the one place.
 */
@Injectable()
export class HaService {
  constructor(
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly policy: AccessPolicy,
    private readonly poller: HaPollerService,
    private readonly episodes: HaEpisodesService,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
  ) {}

  /** Every remote the caller may see, from the last HA poll (pending until its first read). */
  async overview(caller: Caller): Promise<HaOverview> {
    const ids = await this.remotes.listIds();
    const visible = this.policy.allowedRemotes(caller, 'remote.audit', ids);
    const readings = this.poller.readingsOf();
    return {
      remotes: ids
        .filter((remote) => visible.has(remote))
        .sort()
        .map((remote) => {
          const reading = readings.get(remote);
          const base = {
            remote,
            error: reading?.error ?? null,
            readAt: reading?.at.toISOString() ?? null,
          };
          if (!reading?.status) {
            return {
              ...base,
              status: reading?.outcome ?? 'pending',
              coordinator: null,
              fencingEpoch: null,
              nodes: zeroCounts(HA_NODE_STATES),
              vms: zeroCounts(HA_VM_STATES),
              alerts: [],
            };
          }
          return { ...base, status: 'ok' as const, ...summarize(reading.status) };
        }),
    };
  }

  /** The remote's HA state read now: coordinator, epoch, every node, the HA VMs the caller may see. */
  async remote(caller: Caller, remote: string): Promise<RemoteHa> {
    const privileges = ALL_PRIVILEGES.filter((privilege) =>
      this.policy.holds(caller, privilege, remotePath(remote)),
    );
    const { status, error } = await this.read(caller, 'remote.audit', remotePath(remote), remote);
    if (!status)
      return {
        remote,
        available: false,
        error,
        coordinator: null,
        fencingEpoch: null,
        readAt: this.clock.now().toISOString(),
        nodes: [],
        vms: [],
        privileges,
      };
    const nodes = nodesById(status);
    return {
      remote,
      available: true,
      error: null,
      coordinator: status.coordinatorNodeId || null,
      fencingEpoch: String(status.fencingEpoch),
      readAt: this.clock.now().toISOString(),
      nodes: status.nodes.map((node) => toNodeView(node, status.coordinatorNodeId)),
      vms: status.resources
        .filter((resource) =>
          this.policy.holds(caller, 'vm.audit', vmPath(remote, resource.vmUuid)),
        )
        .sort(
          (a, b) =>
            (b.policy?.priority ?? 0) - (a.policy?.priority ?? 0) || compare(a.vmName, b.vmName),
        )
        .map((resource) => toVmView(resource, nodes.get(resource.nodeId))),
      privileges,
    };
  }

  /** One VM's HA state read now (protected: false when it has no policy), with its node's. */
  async vm(caller: Caller, remote: string, vmId: string): Promise<VmHa> {
    const { status, error } = await this.read(caller, 'vm.audit', vmPath(remote, vmId), remote);
    if (!status)
      return {
        remote,
        vm: vmId,
        available: false,
        error,
        protected: false,
        ha: null,
        node: null,
        coordinator: null,
        fencingEpoch: null,
        readAt: this.clock.now().toISOString(),
      };
    return this.vmView(remote, vmId, status);
  }

  /** Puts the VM under HA or changes its policy; answers its HA state as the cluster now has it. */
  async setPolicy(caller: Caller, remote: string, vmId: string, body: HaPolicyBody): Promise<VmHa> {
    const connection = await this.connection(
      caller,
      'vm.ha',
      vmPath(remote, vmId),
      remote,
      HA_POLICY_PERMISSION,
    );
    await this.agents.setHaPolicy(connection, vmId, body);
    this.audit.note({ policy: body });
    return this.vmView(remote, vmId, await this.poller.readNow(remote, connection));
  }

  /** Takes the VM out of HA; 404 when it was not under HA. */
  async removePolicy(caller: Caller, remote: string, vmId: string): Promise<void> {
    const connection = await this.connection(
      caller,
      'vm.ha',
      vmPath(remote, vmId),
      remote,
      HA_POLICY_PERMISSION,
    );
    if (!(await this.agents.removeHaPolicy(connection, vmId)))
      throw DomainError.notFound(`an HA policy of VM ${vmId} on remote ${remote}`);
  }

  /**
   * Drains the node: the cluster live-migrates its VMs away (highest HA priority first) and places
   * nothing on it; the ha.drain task follows it until the node is empty (or the drain stops).
   */
  async enterMaintenance(
    caller: Caller,
    remote: string,
    node: string,
  ): Promise<{ taskId: string }> {
    const connection = await this.connection(
      caller,
      'node.maintenance',
      remotePath(remote),
      remote,
      HA_MAINTENANCE_PERMISSION,
    );
    const accepted = await this.episodes.drainRequested(
      remote,
      node,
      caller.display,
      () => this.clock.now(),
      () => this.agents.setMaintenance(connection, node, true),
    );
    this.audit.note({ taskId: accepted.taskId });
    return accepted;
  }

  /** Returns the node to service; answers its HA state. */
  async exitMaintenance(caller: Caller, remote: string, node: string): Promise<HaNodeView> {
    const connection = await this.connection(
      caller,
      'node.maintenance',
      remotePath(remote),
      remote,
      HA_MAINTENANCE_PERMISSION,
    );
    const answer = await this.agents.setMaintenance(connection, node, false);
    const status = await this.poller.readNow(remote, connection);
    return toNodeView(answer, status.coordinatorNodeId);
  }

  private vmView(remote: string, vmId: string, status: HaStatus__Output): VmHa {
    const nodes = nodesById(status);
    const resource = status.resources.find(
      (candidate) => candidate.vmUuid.toLowerCase() === vmId.toLowerCase(),
    );
    const node = resource ? nodes.get(resource.nodeId) : undefined;
    return {
      remote,
      vm: vmId,
      available: true,
      error: null,
      protected: resource !== undefined,
      ha: resource ? toVmView(resource, node) : null,
      node: node ? toNodeView(node, status.coordinatorNodeId) : null,
      coordinator: status.coordinatorNodeId || null,
      fencingEpoch: String(status.fencingEpoch),
      readAt: this.clock.now().toISOString(),
    };
  }

  /**
   * Reads the remote's HA status with the credential of the caller's right, and feeds the events.
   * What stands between the manager and the cluster's HA state (the remote unreachable, agents
   * without HA, a credential without ha:status:read) is an answer, not a failure: pages that show
   * HA next to other things (the VM page) must load whatever the cluster's HA can say. The
   * caller's own lack of privilege and an unknown remote stay errors.
   */
  private async read(
    caller: Caller,
    privilege: Privilege,
    path: string,
    remote: string,
  ): Promise<
    | { status: HaStatus__Output; error: null }
    | { status: undefined; error: { code: string; message: string } }
  > {
    await this.remotes.get(remote);
    const credentialId = this.policy.credentialFor(caller, privilege, path, remote);
    try {
      const connection = await this.remotes.connectionFor(remote, credentialId, HA_READ_PERMISSION);
      return { status: await this.poller.readNow(remote, connection), error: null };
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      return { status: undefined, error: { code: error.code, message: error.message } };
    }
  }

  private async connection(
    caller: Caller,
    privilege: Privilege,
    path: string,
    remote: string,
    clusterPermission: string,
  ) {
    await this.remotes.get(remote);
    // A right that comes from a remote group acts with that group's credential, within what it may do.
    const credentialId = this.policy.credentialFor(caller, privilege, path, remote);
    return this.remotes.connectionFor(remote, credentialId, clusterPermission);
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
