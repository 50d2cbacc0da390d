import type { ListVmsResponse, Vm } from '@debvisor/proto';
import type {
  HypervisorDriver,
  ShutdownOptions,
  VmDefinition,
  VmInstance,
} from '../drivers/hypervisor.driver';
import type { RegistryService } from '../registry/registry.service';
import type { CallContext } from '../rpc/call-context';
import {
  peerTargetOf,
  type PeerClientRepository,
  type PeerTarget,
} from '../rpc/peer-client.repository';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { forEachLimit } from '../shared/concurrency';
import type { Logger } from '../shared/logger';
import type { OperationLocks } from '../shared/operation-locks';
import type { VmDiskLocks } from './vm-disk-locks';
import type { VmIndexRepository } from './vm-index.repository';
import { toProtoVm } from './vm.mapper';

const INDEX_CONCURRENCY = 16;

/** Deadline of each node's answer when listing the VMs of the whole cluster. */
export const PEER_LIST_TIMEOUT_MS = 3_000;
/** Deadline of a forwarded VM operation when the caller set none (operations wait for the VM). */
export const PEER_OPERATION_TIMEOUT_MS = 120_000;

export interface VmServiceDeps {
  nodeId: string;
  driver: HypervisorDriver;
  index: Pick<VmIndexRepository, 'get' | 'put' | 'list' | 'removeIfOwnedBy'>;
  registry: Pick<RegistryService, 'aliveNodes' | 'find'>;
  peers: Pick<PeerClientRepository, 'vmCall'>;
  /** One operation at a time per VM on this node, shared with storage operations and migrations. */
  vmLocks: OperationLocks;
  /** The VM's disk locks: taken before it starts, released when it stops. */
  disks: Pick<VmDiskLocks, 'lock' | 'unlock' | 'claim'>;
  logger: Logger;
}

/** States from which a VM starts (a crashed VM still holds its disks: it takes them again). */
const STARTABLE: readonly string[] = ['stopped', 'crashed'];

/**
 * VMs of the cluster. ListVms without a node fans out to every alive node; a node-specific call is
 * answered here when the VM is on this node, otherwise forwarded to the owning node's agent (found
 * through the VM location index and the node registry). A forwarded call is never forwarded again.
 */
export class VmService {
  constructor(private readonly deps: VmServiceDeps) {}

  /** Makes the location index name this node for each of its VMs, and drops entries for VMs it no longer has. */
  async publishLocalVms(): Promise<void> {
    const { nodeId, driver, index } = this.deps;
    const local = await driver.list();
    const known = await index.list();
    const stale = local.filter(
      (vm) =>
        known.get(vm.spec.uuid)?.nodeId !== nodeId ||
        known.get(vm.spec.uuid)?.name !== vm.spec.name,
    );
    await forEachLimit(stale, INDEX_CONCURRENCY, (vm) =>
      index.put(vm.spec.uuid, { nodeId, name: vm.spec.name }),
    );
    const here = new Set(local.map((vm) => vm.spec.uuid));
    const gone = [...known].filter(
      ([uuid, location]) => location.nodeId === nodeId && !here.has(uuid),
    );
    await forEachLimit(gone, INDEX_CONCURRENCY, ([uuid, location]) =>
      index.removeIfOwnedBy(uuid, location),
    );
  }

  /**
   * Makes every VM that runs here hold its disks (one started before disk locks existed, or seeded
   * by the sim driver, holds none), at each (re-)registration. A disk another VM holds means two
   * running VMs share it: logged as an error for an operator, nothing is stopped. Nothing is
   * released here: a stopped copy of a VM that the cluster runs elsewhere holds the same locks.
   */
  async holdRunningVmDisks(): Promise<void> {
    const live = (await this.deps.driver.list()).filter(
      (vm) => !STARTABLE.includes(vm.runtime.state) && vm.runtime.lockedBy === '',
    );
    await forEachLimit(live, INDEX_CONCURRENCY, async (vm) => {
      const conflicts = await this.deps.disks.claim(vm.spec).catch((error: unknown) => {
        this.deps.logger.warn(
          { err: error, vm: vm.spec.uuid },
          'could not take the disk locks of a running VM; the next registration tries again',
        );
        return [];
      });
      if (conflicts.length > 0)
        this.deps.logger.error(
          { vm: vm.spec.uuid, name: vm.spec.name, images: conflicts },
          'a running VM uses disks another VM holds',
        );
    });
  }

  /** One node's VMs, or with nodeId '' every alive node's (nodes that do not answer are reported, not fatal). */
  async list(nodeId: string, context: CallContext): Promise<ListVmsResponse> {
    const self = this.deps.nodeId;
    if (nodeId === self || (context.forwarded && nodeId === ''))
      return { vms: await this.localVms(), unreachableNodes: {} };
    if (context.forwarded)
      throw new AgentError(ErrorCode.NotFound, `this agent serves node ${self}, not ${nodeId}`);
    return nodeId === '' ? this.listCluster(context) : this.listPeer(nodeId, context);
  }

  private async listPeer(nodeId: string, context: CallContext): Promise<ListVmsResponse> {
    const node = await this.deps.registry.find(nodeId);
    if (!node) throw new AgentError(ErrorCode.NotFound, `node ${nodeId} is not in the registry`);
    if (!node.alive) throw new AgentError(ErrorCode.Unavailable, `node ${nodeId} is not alive`);
    const answer = await this.deps.peers.vmCall(
      peerTargetOf(node),
      'ListVms',
      { nodeId },
      context,
      timeout(context, PEER_LIST_TIMEOUT_MS),
    );
    return { vms: answer.vms, unreachableNodes: {} };
  }

  private async listCluster(context: CallContext): Promise<ListVmsResponse> {
    const self = this.deps.nodeId;
    const peers = (await this.deps.registry.aliveNodes()).filter(
      (node) => node.info.nodeId !== self,
    );
    const answers = await Promise.all([
      this.localVms().then((vms) => ({ nodeId: self, vms })),
      ...peers.map((node) =>
        this.deps.peers
          .vmCall(
            peerTargetOf(node),
            'ListVms',
            { nodeId: node.info.nodeId },
            context,
            timeout(context, PEER_LIST_TIMEOUT_MS),
          )
          .then(
            (answer) => ({ nodeId: node.info.nodeId, vms: answer.vms as Vm[] }),
            (error: unknown) => {
              this.deps.logger.warn(
                { nodeId: node.info.nodeId, err: error, traceId: context.traceId },
                'could not list the VMs of a node',
              );
              return {
                nodeId: node.info.nodeId,
                error: error instanceof AgentError ? error.message : 'the node failed to answer',
              };
            },
          ),
      ),
    ]);
    const response = { vms: [] as Vm[], unreachableNodes: {} as Record<string, string> };
    for (const answer of answers.sort((a, b) => a.nodeId.localeCompare(b.nodeId))) {
      if ('vms' in answer) response.vms.push(...answer.vms);
      else response.unreachableNodes[answer.nodeId] = answer.error;
    }
    return response;
  }

  get(uuid: string, context: CallContext): Promise<Vm> {
    return this.onOwner(
      uuid,
      context,
      async (vm) => vm,
      (target) =>
        this.deps.peers.vmCall(
          target,
          'GetVm',
          { uuid },
          context,
          timeout(context, PEER_LIST_TIMEOUT_MS),
        ),
    );
  }

  /** Starts the VM once it holds every disk (refused, naming the other VM, when another holds one). */
  start(uuid: string, context: CallContext): Promise<Vm> {
    return this.onOwner(
      uuid,
      context,
      (vm) =>
        this.held(vm, 'start', async () => {
          if (!STARTABLE.includes(vm.runtime.state)) return this.deps.driver.start(uuid); // the driver says why not
          await this.deps.disks.lock(vm.spec);
          try {
            return await this.deps.driver.start(uuid);
          } catch (error) {
            const after = await this.deps.driver.get(uuid).catch(() => undefined);
            if (!after || STARTABLE.includes(after.runtime.state))
              await this.deps.disks.unlock(vm.spec);
            throw error;
          }
        }),
      (target) =>
        this.deps.peers.vmCall(
          target,
          'StartVm',
          { uuid },
          context,
          timeout(context, PEER_OPERATION_TIMEOUT_MS),
        ),
    );
  }

  shutdown(uuid: string, options: ShutdownOptions, context: CallContext): Promise<Vm> {
    const request = {
      uuid,
      timeoutSeconds: options.timeoutSeconds ?? 0,
      forceStop: options.forceStop ?? false,
    };
    return this.onOwner(
      uuid,
      context,
      (vm) =>
        this.held(vm, 'shutdown', () =>
          this.stopping(vm, () => this.deps.driver.shutdown(uuid, options)),
        ),
      (target) =>
        this.deps.peers.vmCall(
          target,
          'ShutdownVm',
          request,
          context,
          timeout(context, PEER_OPERATION_TIMEOUT_MS + request.timeoutSeconds * 1000),
        ),
    );
  }

  reboot(uuid: string, context: CallContext): Promise<Vm> {
    return this.onOwner(
      uuid,
      context,
      (vm) => this.held(vm, 'reboot', () => this.deps.driver.reboot(uuid)),
      (target) =>
        this.deps.peers.vmCall(
          target,
          'RebootVm',
          { uuid },
          context,
          timeout(context, PEER_OPERATION_TIMEOUT_MS),
        ),
    );
  }

  stop(uuid: string, context: CallContext): Promise<Vm> {
    return this.onOwner(
      uuid,
      context,
      (vm) => this.held(vm, 'stop', () => this.stopping(vm, () => this.deps.driver.stop(uuid))),
      (target) =>
        this.deps.peers.vmCall(
          target,
          'StopVm',
          { uuid },
          context,
          timeout(context, PEER_OPERATION_TIMEOUT_MS),
        ),
    );
  }

  /** Runs an operation that ends the VM, then lets go of its disks once it is stopped. */
  private async stopping(vm: VmInstance, run: () => Promise<VmInstance>): Promise<VmInstance> {
    const after = await run();
    if (after.runtime.state === 'stopped') await this.deps.disks.unlock(vm.spec);
    return after;
  }

  /** Holds the VM on this node for the operation (refused while a storage operation or a migration holds it). */
  private held(
    vm: VmInstance,
    operation: string,
    run: () => Promise<VmInstance>,
  ): Promise<VmInstance> {
    return this.deps.vmLocks.with(vm.spec.uuid, operation, run, vm.spec.name);
  }

  /**
   * Defines a stopped VM on `nodeId` (this node when empty) from a definition the caller kept — a DR
   * failover when the VM's own cluster is gone. ALREADY_EXISTS when this cluster knows the VM id.
   */
  async define(spec: VmDefinition, nodeId: string, context: CallContext): Promise<Vm> {
    const self = this.deps.nodeId;
    const target = nodeId || self;
    if (target !== self) {
      if (context.forwarded)
        throw new AgentError(ErrorCode.NotFound, `this agent serves node ${self}, not ${target}`);
      const node = await this.deps.registry.find(target);
      if (!node) throw new AgentError(ErrorCode.NotFound, `node ${target} is not in the registry`);
      if (!node.alive) throw new AgentError(ErrorCode.Unavailable, `node ${target} is not alive`);
      return this.deps.peers.vmCall(
        peerTargetOf(node),
        'DefineVm',
        { spec, nodeId: target },
        context,
        timeout(context, PEER_OPERATION_TIMEOUT_MS),
      );
    }
    const known = await this.deps.index.get(spec.uuid);
    if (known || (await this.deps.driver.get(spec.uuid))) {
      throw new AgentError(
        ErrorCode.AlreadyExists,
        `VM ${spec.uuid} is already defined on node ${known?.nodeId ?? self} of this cluster`,
      );
    }
    const vm = await this.deps.driver.define(spec);
    await this.deps.index.put(spec.uuid, { nodeId: self, name: spec.name });
    this.deps.logger.info(
      { vm: spec.uuid, traceId: context.traceId },
      'VM defined from a kept definition',
    );
    return this.toProto(vm);
  }

  /** Removes a stopped VM's definition from its node (its disks stay) and from the location index. */
  undefine(uuid: string, context: CallContext): Promise<Vm> {
    return this.onOwner(
      uuid,
      context,
      (vm) =>
        this.held(vm, 'undefine', async () => {
          await this.deps.driver.undefine(uuid); // the driver refuses a VM that is not stopped
          // A crashed VM kept its disk locks; they go with it, unless the cluster runs this VM elsewhere (same uuid, same locks).
          const location = await this.deps.index.get(uuid);
          if (!location || location.nodeId === this.deps.nodeId)
            await this.deps.disks.unlock(vm.spec);
          await this.deps.index.removeIfOwnedBy(uuid, {
            nodeId: this.deps.nodeId,
            name: vm.spec.name,
          });
          this.deps.logger.info({ vm: uuid, traceId: context.traceId }, 'VM definition removed');
          return vm;
        }),
      (target) =>
        this.deps.peers.vmCall(
          target,
          'UndefineVm',
          { uuid },
          context,
          timeout(context, PEER_OPERATION_TIMEOUT_MS),
        ),
    );
  }

  private async localVms(): Promise<Vm[]> {
    return (await this.deps.driver.list()).map((vm) => this.toProto(vm));
  }

  /** The VM as answered: its lockedBy names this agent's operation when the hypervisor's lock is free. */
  private toProto(vm: VmInstance): Vm {
    const lockedBy = vm.runtime.lockedBy || (this.deps.vmLocks.holder(vm.spec.uuid) ?? '');
    return toProtoVm({ ...vm, runtime: { ...vm.runtime, lockedBy } }, this.deps.nodeId);
  }

  private async onOwner(
    uuid: string,
    context: CallContext,
    local: (vm: VmInstance) => Promise<VmInstance>,
    remote: (target: PeerTarget) => Promise<Vm>,
  ): Promise<Vm> {
    const here = await this.deps.driver.get(uuid);
    if (here) return this.toProto(await local(here));
    if (context.forwarded) throw notFound(uuid);
    const location = await this.deps.index.get(uuid);
    if (!location || location.nodeId === this.deps.nodeId) throw notFound(uuid);
    const node = await this.deps.registry.find(location.nodeId);
    if (!node?.alive)
      throw new AgentError(
        ErrorCode.Unavailable,
        `VM ${uuid} is on node ${location.nodeId}, which is not alive`,
      );
    return remote(peerTargetOf(node));
  }
}

/** The caller's remaining time (less a margin for the way back), capped at `fallbackMs`. */
export function peerTimeout(context: CallContext, fallbackMs: number): number {
  return timeout(context, fallbackMs);
}

function timeout(context: CallContext, fallbackMs: number): number {
  if (context.deadline === undefined) return fallbackMs;
  return Math.max(1, Math.min(fallbackMs, context.deadline - Date.now() - 100));
}

function notFound(uuid: string): AgentError {
  return new AgentError(ErrorCode.NotFound, `no VM with uuid ${uuid} in this cluster`);
}
