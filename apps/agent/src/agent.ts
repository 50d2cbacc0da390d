import { debvisorV1 } from '@debvisor/proto';
import { accessServiceHandlers } from './access/access.handlers';
import { ApiKeyRepository } from './apikeys/api-key.repository';
import { ApiKeyService } from './apikeys/api-key.service';
import type { AgentConfig } from './config/agent-config.schema';
import { loadTlsMaterial } from './config/tls-material';
import { createDrivers } from './drivers/create-drivers';
import { migrationServiceHandlers } from './migration/migration.handlers';
import { ClusterInfoService } from './registry/cluster-info.service';
import { LocalNodeService } from './registry/local-node.service';
import { NodePresence } from './registry/node-presence.service';
import { nodeServiceHandlers } from './registry/registry.handlers';
import { RegistryRepository } from './registry/registry.repository';
import { RegistryService } from './registry/registry.service';
import { Authenticator } from './rpc/authenticator.service';
import { PeerClientRepository } from './rpc/peer-client.repository';
import { RpcRouter } from './rpc/rpc-router';
import { startRpcServer } from './rpc/rpc-server';
import { systemClock, type Clock } from './shared/clock';
import { createEtcdClient } from './shared/etcd-client';
import { lifecycleLogger, type Logger } from './shared/logger';
import { storageServiceHandlers } from './storage/storage.handlers';
import { StorageService } from './storage/storage.service';
import { VmIndexRepository } from './vms/vm-index.repository';
import { VmService } from './vms/vm.service';
import { vmServiceHandlers } from './vms/vms.handlers';

/** How long a stopping agent lets calls in flight finish. */
const SHUTDOWN_GRACE_MS = 5_000;

export interface RunningAgent {
  /** The port the gRPC server listens on. */
  readonly port: number;
  /** Leaves the registry (lease revoked), drains calls, saves state, closes connections. */
  stop(): Promise<void>;
}

/** Wires the agent together and starts it: drivers, gRPC server, node registration, heartbeats. */
export async function startAgent(config: Readonly<AgentConfig>, logger: Logger, clock: Clock = systemClock): Promise<RunningAgent> {
  const tls = loadTlsMaterial(config);
  const etcd = createEtcdClient(config.etcd.endpoints);
  const undo: (() => unknown)[] = [() => etcd.close()];
  try {
    const { hypervisor, storage } = await createDrivers(config, etcd, clock);
    undo.unshift(() => hypervisor.close());

    const apiKeys = new ApiKeyService(new ApiKeyRepository(etcd), clock, { cacheTtlMs: config.apiKeyCacheSeconds * 1000 }, logger);
    const registry = new RegistryService(new RegistryRepository(etcd, logger), clock, config.leaseTtlSeconds);
    const localNode = new LocalNodeService({ nodeId: config.nodeId, advertise: config.advertise }, hypervisor, storage);
    const peers = new PeerClientRepository(tls);
    undo.unshift(() => peers.close());
    const vms = new VmService({ nodeId: config.nodeId, driver: hypervisor, index: new VmIndexRepository(etcd), registry, peers, logger });

    const rpc = new RpcRouter(new Authenticator(apiKeys, tls.clusterCa), logger);
    const v1 = debvisorV1();
    const server = await startRpcServer(config.listen, tls, [
      {
        definition: v1.NodeService.service,
        handlers: nodeServiceHandlers({
          rpc,
          clusterId: config.clusterId,
          nodeId: config.nodeId,
          registry,
          localNode,
          clusterInfo: new ClusterInfoService(config, registry),
        }),
      },
      { definition: v1.VmService.service, handlers: vmServiceHandlers(rpc, vms) },
      { definition: v1.StorageService.service, handlers: storageServiceHandlers(rpc, new StorageService(storage)) },
      { definition: v1.MigrationService.service, handlers: migrationServiceHandlers(rpc) },
      { definition: v1.AccessService.service, handlers: accessServiceHandlers(rpc) },
    ]);
    undo.unshift(() => server.stop(0));

    // Every (re-)registration republishes the VM location index, which a replaced etcd would lack.
    const presence = new NodePresence(config.nodeId, registry, localNode, config.heartbeatIntervalSeconds * 1000, logger, () => vms.publishLocalVms());
    await presence.start();
    lifecycleLogger(logger).info({ listen: config.listen, advertise: config.advertise, port: server.port }, 'agent ready'); // nodeId: in every line

    return {
      port: server.port,
      async stop() {
        await presence.stop();
        await server.stop(SHUTDOWN_GRACE_MS);
        peers.close();
        await apiKeys.settle();
        await hypervisor.close();
        etcd.close();
      },
    };
  } catch (error) {
    for (const step of undo) await Promise.resolve(step()).catch(() => undefined);
    throw error;
  }
}
