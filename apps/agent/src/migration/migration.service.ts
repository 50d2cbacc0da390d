import { parseEndpoint } from '@debvisor/common';
import type {
  CancelMigrationResponse,
  MigrationProgress,
  PrepareMigrationResponse,
} from '@debvisor/proto';
import type { ServiceError } from '@grpc/grpc-js';
import type { HypervisorDriver } from '../drivers/hypervisor.driver';
import type { RegistryService } from '../registry/registry.service';
import type { CallContext } from '../rpc/call-context';
import type { PeerClientRepository, PeerTarget } from '../rpc/peer-client.repository';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { VmIndexRepository } from '../vms/vm-index.repository';
import type { MigrationSourceService } from './migration-source.service';
import type { MigrationTargetService } from './migration-target.service';
import type { MigrateVmInput, MigrationRef, PrepareMigrationInput } from './migration.requests';
import { caFingerprints as caFingerprintsOf } from '../trust/peer-clusters.repository';
import type { PeerClusters } from '../trust/peer-clusters.service';

const PEER_TIMEOUT_MS = 60_000;

export interface MigrationServiceDeps {
  nodeId: string;
  driver: Pick<HypervisorDriver, 'get'>;
  index: Pick<VmIndexRepository, 'get'>;
  registry: Pick<RegistryService, 'find'>;
  peers: Pick<PeerClientRepository, 'migrationCall' | 'migrateStream' | 'streamError'>;
  source: MigrationSourceService;
  target: MigrationTargetService;
  /** SHA-256 fingerprints of this cluster's CA (two during a CA rotation). */
  clusterCaFingerprints: () => readonly string[];
  /** The peer clusters the operator trusts: the only other clusters a VM may go to. */
  trustedPeers: Pick<PeerClusters, 'trustedFor'>;
}

/**
 * Routes migration calls to the node they concern, as VM calls are routed: the source role to the
 * node that runs the VM, the target role to the target node, cancel and progress to the node
 * named or the VM's node. A forwarded call is never forwarded again.
 */
export class MigrationService {
  constructor(private readonly deps: MigrationServiceDeps) {}

  async prepare(
    input: PrepareMigrationInput,
    context: CallContext,
  ): Promise<PrepareMigrationResponse> {
    if (input.role === 'target') {
      if (input.targetNodeId === this.deps.nodeId) return this.deps.target.prepare(input, context);
      return this.deps.peers.migrationCall(
        await this.node(input.targetNodeId, context),
        'PrepareMigration',
        input,
        context,
        PEER_TIMEOUT_MS,
      );
    }
    const owner = await this.sourceOf(input.vm.uuid, context);
    if (owner === 'here') return this.deps.source.prepare(input);
    return this.deps.peers.migrationCall(
      owner,
      'PrepareMigration',
      input,
      context,
      PEER_TIMEOUT_MS,
    );
  }

  async migrate(
    input: MigrateVmInput,
    context: CallContext,
    emit: (progress: MigrationProgress) => void,
  ): Promise<void> {
    // The target's check (a registry read) runs alongside the lookup of the VM's node: a source
    // here needs it next, and a forwarded call is checked again by the node that runs the VM.
    const trusted = this.trustedTarget(input);
    trusted.catch(() => undefined); // awaited below when the VM is here; never unhandled
    const owner = await this.sourceOf(input.uuid, context);
    if (owner === 'here') {
      await this.deps.source.migrate(await trusted, emit);
      return;
    }
    const stream = this.deps.peers.migrateStream(owner, input, context);
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (progress: MigrationProgress) => emit(progress));
      stream.on('end', () => resolve());
      stream.on('error', (error: ServiceError) =>
        reject(this.deps.peers.streamError(owner, error)),
      );
    });
  }

  async cancel(ref: MigrationRef, context: CallContext): Promise<CancelMigrationResponse> {
    const where = await this.routeOf(ref, context);
    if (where !== 'here')
      return this.deps.peers.migrationCall(where, 'CancelMigration', ref, context, PEER_TIMEOUT_MS);
    if (this.deps.source.cancel(ref.migrationId)) return { cancelled: true };
    return { cancelled: await this.deps.target.cancel(ref.migrationId) };
  }

  async progress(ref: MigrationRef, context: CallContext): Promise<MigrationProgress> {
    const where = await this.routeOf(ref, context);
    if (where !== 'here')
      return this.deps.peers.migrationCall(where, 'GetMigration', ref, context, PEER_TIMEOUT_MS);
    const progress =
      this.deps.source.progress(ref.migrationId) ?? this.deps.target.progress(ref.migrationId);
    if (!progress)
      throw new AgentError(
        ErrorCode.NotFound,
        `node ${this.deps.nodeId} knows no migration ${ref.migrationId}`,
      );
    return progress;
  }

  /**
   * The request, once its target is one this cluster may send a VM to: a live registered node of
   * this cluster at the endpoint the registry holds, or an agent of a peer cluster whose CA the
   * operator trusts here. The direct transport's data endpoint must be the target's host. Whoever
   * holds migration:vm:migrate cannot name another endpoint or CA and receive the VM's memory.
   */
  private async trustedTarget(input: MigrateVmInput): Promise<MigrateVmInput> {
    const refuse = (why: string) =>
      new AgentError(ErrorCode.PermissionDenied, `refusing the migration target: ${why}`);
    const caFingerprints = caFingerprintsOf(input.targetCaPem);
    const sameCluster =
      input.targetCaPem === '' ||
      caFingerprints.some((f) => this.deps.clusterCaFingerprints().includes(f));
    if (sameCluster) {
      if (input.targetNodeId === this.deps.nodeId)
        throw refuse(`the VM already runs on node ${this.deps.nodeId}`);
      const node = await this.deps.registry.find(input.targetNodeId);
      if (!node?.alive)
        throw refuse(`node ${input.targetNodeId} is not a live node of this cluster`);
      if (node.info.agentEndpoint !== input.targetEndpoint)
        throw refuse(
          `node ${input.targetNodeId} is registered at ${node.info.agentEndpoint}, not ${input.targetEndpoint}`,
        );
    } else if (!(await this.deps.trustedPeers.trustedFor(input.targetCaPem))) {
      throw refuse(
        "the target CA is neither this cluster's nor a trusted peer cluster's (debvisor-agent-admin peer trust)",
      );
    }
    const dataHost = hostOfDataEndpoint(input.targetDataEndpoint);
    const targetHost = parseEndpoint(input.targetEndpoint)?.host;
    if (dataHost !== undefined && dataHost !== targetHost)
      throw refuse(
        `the data endpoint's host ${dataHost} is not the target agent's host ${targetHost ?? ''}`,
      );
    return input;
  }

  /** The node named, else the VM's source node. */
  private async routeOf(ref: MigrationRef, context: CallContext): Promise<'here' | PeerTarget> {
    if (ref.nodeId === this.deps.nodeId) return 'here';
    if (ref.nodeId !== '') return this.node(ref.nodeId, context);
    return this.sourceOf(ref.vmUuid, context);
  }

  /**
   * The node that runs the VM. During a migration within the cluster the target has the incoming
   * VM too, so the cluster's VM index decides (it names the source until the commit); without an
   * entry, the node that has the VM.
   */
  private async sourceOf(uuid: string, context: CallContext): Promise<'here' | PeerTarget> {
    if (context.forwarded) return 'here';
    const location = await this.deps.index.get(uuid);
    if (!location) return this.ownerOf(uuid, context);
    return location.nodeId === this.deps.nodeId ? 'here' : this.node(location.nodeId, context);
  }

  /** This node when it has the VM; otherwise the node the cluster's VM index names. */
  private async ownerOf(uuid: string, context: CallContext): Promise<'here' | PeerTarget> {
    if (await this.deps.driver.get(uuid)) return 'here';
    if (context.forwarded)
      throw new AgentError(ErrorCode.NotFound, `VM ${uuid} is not on node ${this.deps.nodeId}`);
    const location = await this.deps.index.get(uuid);
    if (!location || location.nodeId === this.deps.nodeId)
      throw new AgentError(ErrorCode.NotFound, `no VM with uuid ${uuid} in this cluster`);
    return this.node(location.nodeId, context);
  }

  private async node(nodeId: string, context: CallContext): Promise<PeerTarget> {
    if (context.forwarded)
      throw new AgentError(
        ErrorCode.NotFound,
        `this agent serves node ${this.deps.nodeId}, not ${nodeId}`,
      );
    const node = await this.deps.registry.find(nodeId);
    if (!node) throw new AgentError(ErrorCode.NotFound, `node ${nodeId} is not in the registry`);
    if (!node.alive) throw new AgentError(ErrorCode.Unavailable, `node ${nodeId} is not alive`);
    return { nodeId, endpoint: node.info.agentEndpoint };
  }
}

/** The host of a direct transport's data endpoint (tcp:<host>:<port> or libvirt:<uri>); undefined when none. */
export function hostOfDataEndpoint(dataEndpoint: string): string | undefined {
  if (dataEndpoint === '') return undefined;
  const tcp = /^tcp:(.+):\d{1,5}$/.exec(dataEndpoint);
  if (tcp) return tcp[1].replace(/^\[(.*)\]$/, '$1');
  const uri = /^libvirt:[A-Za-z0-9+]+:\/\/(?:[^@/]*@)?([^/]+)\//.exec(dataEndpoint);
  if (!uri) return '';
  return (parseEndpoint(uri[1])?.host ?? uri[1]).replace(/^\[(.*)\]$/, '$1');
}
