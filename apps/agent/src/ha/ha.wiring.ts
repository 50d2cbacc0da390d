import type { Etcd3 } from 'etcd3';
import { randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { AgentConfig } from '../config/agent-config.schema';
import type { HypervisorDriver } from '../drivers/hypervisor.driver';
import { RbdCliRepository } from '../drivers/rbd/rbd-cli.repository';
import type { StorageDriver } from '../drivers/storage.driver';
import type { NodeEntry } from '../registry/node.schema';
import type { PeerClientRepository } from '../rpc/peer-client.repository';
import type { Clock } from '../shared/clock';
import { ETCD_KEYS } from '../shared/etcd-keys';
import type { Logger } from '../shared/logger';
import type { OperationLocks } from '../shared/operation-locks';
import type { VmDiskLocks } from '../vms/vm-disk-locks';
import type { VmIndexRepository } from '../vms/vm-index.repository';
import { FailoverService } from './failover.service';
import type { HaConfig } from './ha-config.schema';
import { HaCoordinator } from './ha-coordinator.service';
import { HaNodeService } from './ha-node.service';
import { HaMetrics } from './ha-metrics';
import { HaMetricsRepository } from './ha-metrics.repository';
import { HaRepository } from './ha.repository';
import { HaService } from './ha.service';
import { HealthProbesRepository } from './health-probes.repository';
import { CephNodeFencer, SimNodeFencer, type NodeFencer } from './node-fencer';
import { VmMoverRepository } from './vm-mover.repository';
import type { WatchdogGate } from './watchdog-gate';

/** How long the coordinator waits for a FailoverVm (a VM start on a loaded node takes seconds). */
const FAILOVER_TIMEOUT_MS = 120_000;

export interface HaWiring {
  service: HaService;
  failover: FailoverService;
  /** Before the server answers: the member record, and a fenced node drops its old VMs. */
  startNode(): Promise<void>;
  /** Once the server answers and the node is registered: the coordinator campaign. */
  startCoordinator(): void;
  /** Before each (re-)registration publishes the VMs: drops what is no longer ours. */
  beforePublish(): Promise<void>;
  stop(): Promise<void>;
}

export interface HaWiringDeps {
  config: Readonly<AgentConfig>;
  etcd: Etcd3;
  /** The hypervisor behind the watchdog gate (FailoverVm uses it). */
  hypervisor: HypervisorDriver;
  /** The same driver without the gate: the watchdog itself must not wait for the gate. */
  ungatedHypervisor: HypervisorDriver;
  storage: StorageDriver;
  registry: { list(): Promise<NodeEntry[]> };
  index: VmIndexRepository;
  vmLocks: OperationLocks;
  disks: VmDiskLocks;
  peers: PeerClientRepository;
  etcdReachable: () => Promise<boolean>;
  /** The node's presence once it exists (the health score is bound to its lease). */
  presence: () => { currentLeaseId: string; sinceRenewedMs(): number } | undefined;
  /** The watchdog gate the agent put in front of its hypervisor (`hypervisor` here is the ungated driver). */
  gate: WatchdogGate;
  /** Is a migration bringing this VM to this node (MigrationTargetService.arriving)? */
  arriving: (uuid: string) => boolean;
  /** The agent's metrics registry: the HA metrics join it (ha-metrics.ts). */
  metrics: Registry;
  clock: Clock;
  logger: Logger;
}

/** Builds the agent's HA parts (docs/ha.md) from its configuration. */
export function createHa(deps: HaWiringDeps): HaWiring {
  const { config, logger } = deps;
  const ha: HaConfig = config.ha;
  const repository = new HaRepository(deps.etcd, logger);
  const metrics = new HaMetrics(deps.metrics, {
    nodeId: config.nodeId,
    thresholds: ha,
    repository: new HaMetricsRepository(deps.etcd, repository),
    clock: deps.clock,
  });
  const cli =
    config.storage.driver === 'rbd'
      ? new RbdCliRepository({
          cluster: config.rbd.cluster,
          conf: config.rbd.conf,
          keyring: config.rbd.keyring,
          clientId: config.rbd.clientId,
          rbdBinary: config.rbd.rbdBinary,
          cephBinary: config.rbd.cephBinary,
          radosBinary: config.rbd.radosBinary,
          timeoutMs: config.rbd.commandTimeoutSeconds * 1000,
          peerTimeoutMs: config.rbd.peerTimeoutSeconds * 1000,
        })
      : undefined;
  const fencer: NodeFencer = metrics.countFences(
    cli
      ? new CephNodeFencer(cli, deps.storage, ha.blocklistSeconds)
      : new SimNodeFencer(deps.storage, async (client) => {
          await deps.etcd.delete().key(ETCD_KEYS.simRbdBlocklist(client));
        }),
  );
  const alivePeers = async () =>
    (await deps.registry.list())
      .filter((e) => e.alive)
      .map((e) => ({ nodeId: e.info.nodeId, endpoint: e.info.agentEndpoint }));
  const node = new HaNodeService({
    nodeId: config.nodeId,
    config: ha,
    leaseTtlMs: deps.gate.leaseLimitMs, // the watchdog's threshold: both agree when the lease is lost
    healthIntervalMs: config.heartbeatIntervalSeconds * 1000,
    driver: deps.ungatedHypervisor,
    index: deps.index,
    repository,
    probes: new HealthProbesRepository({
      hypervisor: deps.ungatedHypervisor,
      storage: deps.storage,
      cli,
      probePool: 'rbd',
      nodeId: config.nodeId,
      etcdReachable: deps.etcdReachable,
      gateway: ha.gateway,
      timeoutMs: ha.probeTimeoutMs,
      observe: (outcomes) => metrics.probed(outcomes),
    }),
    presence: {
      get currentLeaseId() {
        return deps.presence()?.currentLeaseId ?? '';
      },
      sinceRenewedMs: () => deps.presence()?.sinceRenewedMs() ?? Infinity,
    },
    peers: alivePeers,
    gate: deps.gate,
    arriving: deps.arriving,
    clock: deps.clock,
    logger,
  });
  deps.gate.watchLease(() => deps.presence()?.sinceRenewedMs() ?? Infinity);
  const coordinator = new HaCoordinator({
    nodeId: config.nodeId,
    config: ha,
    repository,
    registry: deps.registry,
    index: deps.index,
    fencer,
    failover: metrics.countFailovers((target, call, context) =>
      deps.peers.migrationCall(
        { nodeId: target.info.nodeId, endpoint: target.info.agentEndpoint },
        'FailoverVm',
        call,
        context,
        FAILOVER_TIMEOUT_MS,
      ),
    ),
    mover: new VmMoverRepository(deps.peers, () => ({
      caller: {
        principal: `agent:${config.nodeId}`,
        permissions: ['vm:instance:read', 'vm:instance:power', 'migration:vm:migrate'],
      },
      forwarded: false,
      deadline: undefined,
      traceId: randomUUID(),
    })),
    clock: deps.clock,
    logger,
  });
  return {
    service: new HaService({
      clusterId: config.clusterId,
      repository,
      registry: deps.registry,
      index: deps.index,
      clock: deps.clock,
    }),
    failover: new FailoverService({
      nodeId: config.nodeId,
      enabled: ha.enabled,
      driver: deps.hypervisor,
      index: deps.index,
      repository,
      vmLocks: deps.vmLocks,
      disks: deps.disks,
      logger,
    }),
    startNode: async () => {
      if (!ha.enabled) return;
      await node.start();
      if (ha.selfFence) deps.gate.start(); // the watchdog runs on its own timer, not the HA loop's
    },
    startCoordinator: () => {
      if (ha.enabled) coordinator.start();
    },
    beforePublish: () => (ha.enabled ? node.beforePublish() : Promise.resolve()),
    async stop() {
      deps.gate.stop();
      await coordinator.stop();
      await node.stop();
    },
  };
}
