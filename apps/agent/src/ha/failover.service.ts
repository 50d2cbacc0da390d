import type { Vm } from '@debvisor/proto';
import type { HypervisorDriver, VmDefinition, VmInstance } from '../drivers/hypervisor.driver';
import type { CallContext } from '../rpc/call-context';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Logger } from '../shared/logger';
import type { OperationLocks } from '../shared/operation-locks';
import type { VmDiskLocks } from '../vms/vm-disk-locks';
import type { VmIndexRepository, VmLocation } from '../vms/vm-index.repository';
import { toProtoVm } from '../vms/vm.mapper';
import { cleanAfter } from './ha.records';
import type { HaRepository } from './ha.repository';
import type { FailoverVmInput } from './ha.requests';

const RUNNING = new Set(['running', 'starting']);

export interface FailoverDeps {
  nodeId: string;
  enabled: boolean;
  driver: Pick<HypervisorDriver, 'get' | 'define' | 'start'>;
  index: Pick<VmIndexRepository, 'get' | 'put'>;
  repository: Pick<HaRepository, 'leader' | 'fence' | 'member' | 'spec'>;
  vmLocks: OperationLocks;
  disks: Pick<VmDiskLocks, 'lock' | 'unlock'>;
  logger: Logger;
}

/**
 * The target's side of FailoverVm: starts a VM of a fenced node here, from the definition kept in
 * etcd — only for the coordinator that leads now (its fencing epoch is checked against etcd, not
 * trusted), only once the source node is fenced (or reported itself clean), and only when the VM
 * is not placed on a third node. The source may be this node itself: a VM of this node's last
 * fence that no other node took is started here again once this node came back clean and that
 * fence was lifted (docs/ha.md). Idempotent: a VM already running here is answered as it is.
 */
export class FailoverService {
  constructor(private readonly deps: FailoverDeps) {}

  async failover(input: FailoverVmInput, context: CallContext): Promise<Vm> {
    const { nodeId } = this.deps;
    if (!this.deps.enabled)
      throw new AgentError(ErrorCode.FailedPrecondition, `HA is disabled on node ${nodeId}`);
    if (input.targetNodeId !== nodeId)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `this agent serves node ${nodeId}, not ${input.targetNodeId}`,
      );
    // Every record the checks need, read at once (a failover waits on each round trip).
    const [leader, fence, member, location, spec] = await Promise.all([
      this.deps.repository.leader(),
      this.deps.repository.fence(input.sourceNodeId),
      this.deps.repository.member(input.sourceNodeId),
      this.deps.index.get(input.uuid),
      this.deps.repository.spec(input.uuid),
    ]);
    if (!leader || leader.epoch !== input.fencingEpoch)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `refused: fencing epoch ${input.fencingEpoch} is not the HA coordinator's (${leader ? `${leader.epoch}, node ${leader.nodeId}` : 'none elected'})`,
      );
    if (context.caller.principal !== `agent:${leader.nodeId}`)
      throw new AgentError(
        ErrorCode.PermissionDenied,
        `only the HA coordinator (node ${leader.nodeId}) fails VMs over`,
      );
    const clean = fence !== undefined && cleanAfter(member, fence);
    if (input.sourceNodeId === nodeId) {
      // Back on its own node: this node's old copies are gone (clean after the fence that named
      // the VM) and that fence is lifted, so nothing here is an old copy and its disks are free.
      if (!fence || fence.state !== 'released' || !fence.vms.includes(input.uuid) || !clean)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `not started: VM ${input.uuid} starts again on its own node ${nodeId} only once the node came back clean from the fence that named the VM and that fence was lifted (${fence ? `fence ${fence.state}${clean ? ', clean' : ', not reported clean'}` : 'no fence record'})`,
        );
    } else if (
      !fence ||
      fence.state === 'released' ||
      !fence.vms.includes(input.uuid) ||
      !(fence.state === 'fenced' || clean)
    )
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `not started: node ${input.sourceNodeId} is not fenced for VM ${input.uuid} (${fence ? `fence ${fence.state}: ${fence.reason}` : 'no fence record'})`,
      );
    if (location && location.nodeId !== input.sourceNodeId && location.nodeId !== nodeId)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${input.uuid} is placed on node ${location.nodeId}, not on ${input.sourceNodeId}`,
      );
    if (!spec)
      throw new AgentError(ErrorCode.NotFound, `no definition of VM ${input.uuid} was kept`);
    const vm = await this.deps.vmLocks.with(
      input.uuid,
      'failover',
      () => this.startHere(spec, location),
      spec.name,
    );
    this.deps.logger.warn(
      {
        vm: input.uuid,
        from: input.sourceNodeId,
        epoch: input.fencingEpoch,
        traceId: context.traceId,
      },
      'HA: VM failed over to this node',
    );
    return toProtoVm(vm, nodeId);
  }

  /**
   * The location index names this node before the VM is defined here: this node's own HA loop
   * drops a local HA VM that the index places elsewhere, and a returning source must see it
   * elsewhere. On failure the index names the source again, so that the coordinator retries.
   */
  private async startHere(spec: VmDefinition, source: VmLocation | undefined): Promise<VmInstance> {
    await this.deps.index.put(spec.uuid, { nodeId: this.deps.nodeId, name: spec.name });
    try {
      const vm = (await this.deps.driver.get(spec.uuid)) ?? (await this.deps.driver.define(spec));
      if (RUNNING.has(vm.runtime.state)) return vm;
      await this.deps.disks.lock(vm.spec);
      try {
        return await this.deps.driver.start(spec.uuid);
      } catch (error) {
        await this.deps.disks.unlock(vm.spec);
        throw error;
      }
    } catch (error) {
      if (source) await this.deps.index.put(spec.uuid, source).catch(() => undefined);
      throw error;
    }
  }
}
