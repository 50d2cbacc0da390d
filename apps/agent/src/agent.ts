import { AuditFileChain } from '@debvisor/audit';
import { parseEndpoint } from '@debvisor/common';
import { join } from 'node:path';
import { debvisorV1, grpcHealthV1 } from '@debvisor/proto';
import { accessServiceHandlers } from './access/access.handlers';
import { ApiKeyRepository } from './apikeys/api-key.repository';
import { ApiKeyService } from './apikeys/api-key.service';
import type { AgentConfig } from './config/agent-config.schema';
import { loadTlsMaterial } from './config/tls-material';
import { createDrivers } from './drivers/create-drivers';
import { EtcdProbeRepository } from './health/etcd-probe.repository';
import { HealthMonitor } from './health/health-monitor.service';
import { healthServiceHandlers } from './health/health.handlers';
import { ServingStatusBoard } from './health/serving-status';
import { AgentMetrics } from './metrics/agent-metrics';
import { startMetricsServer, type RunningMetricsServer } from './metrics/metrics-server';
import { MigrationCookies } from './migration/migration-cookies';
import { MigrationSocketRepository } from './migration/migration-socket.repository';
import { MigrationSourceService } from './migration/migration-source.service';
import { clusterVmsOf, MigrationTargetService } from './migration/migration-target.service';
import { migrationServiceHandlers } from './migration/migration.handlers';
import { haServiceHandlers } from './ha/ha.handlers';
import { createHa } from './ha/ha.wiring';
import { WatchdogGate } from './ha/watchdog-gate';
import { MigrationService } from './migration/migration.service';
import { MirroredDisks } from './migration/mirrored-disks';
import { TunnelClientRepository } from './migration/tunnel-client.repository';
import { TunnelDataClientRepository } from './migration/tunnel-data-client.repository';
import { TunnelDataServer } from './migration/tunnel-data-server';
import { ClusterInfoService } from './registry/cluster-info.service';
import { LocalNodeService } from './registry/local-node.service';
import { NodePresence } from './registry/node-presence.service';
import { nodeServiceHandlers } from './registry/registry.handlers';
import { RegistryRepository } from './registry/registry.repository';
import { RegistryService } from './registry/registry.service';
import { Authenticator } from './rpc/authenticator.service';
import { PeerClientRepository } from './rpc/peer-client.repository';
import { RpcAudit } from './rpc/rpc-audit';
import { RpcRouter } from './rpc/rpc-router';
import { MutualTls13ServerCredentials } from './rpc/tls-credentials';
import { startRpcServer } from './rpc/rpc-server';
import { systemClock, type Clock } from './shared/clock';
import { createEtcdClient, etcdConnectionOf } from './shared/etcd-client';
import { lifecycleLogger, type Logger } from './shared/logger';
import { AGENT_VERSION } from './shared/version';
import { storageServiceHandlers } from './storage/storage.handlers';
import { caRotationHandlers } from './trust/ca-rotation.handlers';
import { CaRotation } from './trust/ca-rotation.service';
import { CertificateIssuer } from './trust/certificate-issuer.service';
import { CertificateRenewer } from './trust/certificate-renewer.service';
import { ClusterTrustRepository } from './trust/cluster-trust.repository';
import { ClusterTrust } from './trust/cluster-trust.service';
import { LiveTls } from './trust/live-tls';
import { PeerClustersRepository } from './trust/peer-clusters.repository';
import { IssuerFilesRepository, TlsFilesRepository } from './trust/tls-files.repository';
import { PeerClusters } from './trust/peer-clusters.service';
import { RevokedNodesRepository } from './trust/revoked-nodes.repository';
import { RevokedNodes } from './trust/revoked-nodes.service';
import { StorageService } from './storage/storage.service';
import { VmSnapshotRepository } from './storage/vm-snapshot.repository';
import { VmSnapshotService } from './storage/vm-snapshot.service';
import { OperationLocks } from './shared/operation-locks';
import { VmDiskLocks } from './vms/vm-disk-locks';
import { VmIndexRepository } from './vms/vm-index.repository';
import { ConsoleService } from './console/console.service';
import { consoleHandler } from './console/console.handlers';
import { VmService } from './vms/vm.service';
import { vmServiceHandlers } from './vms/vms.handlers';

/** How long a stopping agent lets calls in flight finish. */
const SHUTDOWN_GRACE_MS = 5_000;

export interface RunningAgent {
  /** The port the gRPC server listens on. */
  readonly port: number;
  /** The port of the metrics listener (undefined when metrics.enabled is false). */
  readonly metricsPort: number | undefined;
  /** Leaves the registry (lease revoked), drains calls, saves state, closes connections. */
  stop(): Promise<void>;
}

/** Wires the agent together and starts it: drivers, gRPC server, node registration, heartbeats. */
export async function startAgent(
  config: Readonly<AgentConfig>,
  logger: Logger,
  clock: Clock = systemClock,
): Promise<RunningAgent> {
  // The certificate renews itself and the trusted CAs can change: consumers read it when they need it.
  const tls = new LiveTls(loadTlsMaterial(config));
  const etcd = createEtcdClient(etcdConnectionOf(config.etcd));
  const undo: (() => unknown)[] = [() => etcd.close()];
  try {
    const drivers = await createDrivers(config, etcd, clock, logger);
    const { storage, background } = drivers;
    // HA's watchdog (docs/ha.md): a node stalled past its lease stops its HA VMs before anything reads them.
    const watchdog = new WatchdogGate(config.leaseTtlSeconds * 1000);
    const hypervisor = config.ha.enabled ? watchdog.wrap(drivers.hypervisor) : drivers.hypervisor;
    undo.unshift(() => hypervisor.close());
    const metrics = new AgentMetrics({
      clusterId: config.clusterId,
      nodeId: config.nodeId,
      version: AGENT_VERSION,
      hypervisorDriver: hypervisor.name,
      storageDriver: storage.name,
    });
    metrics.recordCertificates(tls);

    const apiKeys = new ApiKeyService(
      new ApiKeyRepository(etcd),
      clock,
      { cacheTtlMs: config.apiKeyCacheSeconds * 1000 },
      logger,
    );
    const registry = new RegistryService(
      new RegistryRepository(etcd, logger),
      clock,
      config.leaseTtlSeconds,
    );
    const localNode = new LocalNodeService(
      { nodeId: config.nodeId, advertise: config.advertise },
      hypervisor,
      storage,
    );
    // The deny list of nodes, read before the server answers and then watched; the trusted peer clusters.
    const revokedNodes = new RevokedNodes(new RevokedNodesRepository(etcd), clock, logger);
    await revokedNodes.start();
    undo.unshift(() => revokedNodes.stop());
    const trustedPeers = new PeerClusters(new PeerClustersRepository(etcd), clock);
    const peers = new PeerClientRepository(tls, metrics.rpc);
    undo.unshift(() => peers.close());
    const tlsFiles = new TlsFilesRepository(config.tls);
    const clusterTrustStore = new ClusterTrustRepository(etcd);
    const certificates = new CertificateIssuer({
      nodeId: config.nodeId,
      files: config.tls.issuer && new IssuerFilesRepository(config.tls.issuer),
      lifetimeMs: config.tls.certificateLifetimeSeconds * 1000,
      tls,
      revoked: revokedNodes,
      clock,
      logger,
    });
    const renewer = new CertificateRenewer({
      nodeId: config.nodeId,
      tls,
      issuer: certificates,
      registry,
      peers,
      files: tlsFiles,
      trust: clusterTrustStore,
      random: Math.random,
      clock,
      logger,
    });
    const vmIndex = new VmIndexRepository(etcd);
    // One operation at a time per VM (power, storage, migration) and per image, on this node.
    const vmLocks = new OperationLocks('VM');
    const imageLocks = new OperationLocks('image');
    const diskLocks = new VmDiskLocks(storage, vmIndex, logger);
    const vms = new VmService({
      nodeId: config.nodeId,
      driver: hypervisor,
      index: vmIndex,
      registry,
      peers,
      vmLocks,
      disks: diskLocks,
      logger,
    });
    const consoles = new ConsoleService({
      nodeId: config.nodeId,
      driver: hypervisor,
      index: vmIndex,
      registry,
      peers,
    });
    const serverCredentials = new MutualTls13ServerCredentials(tls);
    const sockets = new MigrationSocketRepository(join(config.stateDir, 'mig'));
    const mirrored = new MirroredDisks({
      storage,
      disks: diskLocks,
      clock,
      timeoutMs: config.migration.mirrorHandoverTimeoutSeconds * 1000,
      logger,
    });
    const migrationSource = new MigrationSourceService({
      nodeId: config.nodeId,
      progressIntervalMs: config.migration.progressIntervalMs,
      driver: hypervisor,
      index: vmIndex,
      tunnels: new TunnelClientRepository(tls),
      data: new TunnelDataClientRepository(tls),
      sockets,
      vmLocks,
      disks: diskLocks,
      get clusterCa() {
        return tls.clusterCa;
      },
      storage,
      mirrored,
      postcopyRecoveryWindowMs: config.migration.postcopyRecoveryWindowSeconds * 1000,
      clock,
      logger,
    });
    const migrationTarget = new MigrationTargetService({
      nodeId: config.nodeId,
      advertise: config.advertise,
      advertiseHost: parseEndpoint(config.advertise)?.host ?? '127.0.0.1',
      get clusterCa() {
        return tls.clusterCa;
      },
      get clusterCaPem() {
        return tls.clusterCaPem;
      },
      clusterCas: () => tls.clusterCas,
      cookieTtlMs: config.migration.cookieTtlSeconds * 1000,
      driver: hypervisor,
      storage,
      clusterVms: clusterVmsOf(vms),
      maxMirrorLagSeconds: config.migration.maxMirrorLagSeconds,
      index: vmIndex,
      cookies: new MigrationCookies(clock),
      credentials: serverCredentials,
      sockets,
      disks: diskLocks,
      mirrored,
      trustedPeers,
      revoked: revokedNodes,
      multifdChannels: config.migration.multifdChannels,
      clock,
      logger,
    });
    undo.unshift(() => migrationTarget.close());
    const migrations = new MigrationService({
      nodeId: config.nodeId,
      driver: hypervisor,
      index: vmIndex,
      registry,
      peers,
      source: migrationSource,
      target: migrationTarget,
      clusterCaFingerprints: () => tls.clusterCas.map((ca) => ca.fingerprint256),
      trustedPeers,
    });

    // The audit file of served RPCs (audit.file): opened before the server answers, so that a bad path stops start-up.
    const auditFile = config.audit.file
      ? await AuditFileChain.open({ path: config.audit.file, clock })
      : undefined;
    if (auditFile) undo.unshift(() => auditFile.close());
    const rpc = new RpcRouter(
      new Authenticator({
        apiKeys,
        clusterCas: () => tls.clusterCas,
        registry,
        revoked: revokedNodes,
      }),
      logger,
      metrics.rpc,
      auditFile && new RpcAudit(auditFile, clock, logger),
    );
    // gRPC health checks and rpc_service_status: evaluated before the server answers, then every heartbeat interval.
    const board = new ServingStatusBoard();
    const etcdProbe = new EtcdProbeRepository(etcd);
    const monitor = new HealthMonitor(
      {
        drivers: async () => ({
          hypervisor: await hypervisor.health(),
          storage: await storage.health(),
        }),
        cephHealth: () => storage.cephHealth(),
        etcdReachable: () => etcdProbe.reachable(),
      },
      board,
      metrics,
      config.heartbeatIntervalSeconds * 1000,
      logger,
    );
    await monitor.start();
    undo.unshift(() => monitor.stop());
    // HA (docs/ha.md): a node that finds itself fenced drops its old VMs before it serves or registers.
    const presenceOf: { node?: NodePresence } = {}; // set once the node's presence exists
    const ha = createHa({
      config,
      etcd,
      hypervisor,
      ungatedHypervisor: drivers.hypervisor,
      gate: watchdog,
      arriving: (uuid) => migrationTarget.arriving(uuid),
      storage,
      registry,
      index: vmIndex,
      vmLocks,
      disks: diskLocks,
      peers,
      etcdReachable: () => etcdProbe.reachable(),
      presence: () => presenceOf.node,
      metrics: metrics.registry,
      clock,
      logger,
    });
    await ha.startNode();
    undo.unshift(() => ha.stop());
    const v1 = debvisorV1();
    const dataServer = new TunnelDataServer(migrationTarget, logger);
    const server = await startRpcServer(
      config.listen,
      serverCredentials,
      [
        {
          definition: v1.NodeService.service,
          handlers: {
            ...nodeServiceHandlers({
              rpc,
              clusterId: config.clusterId,
              nodeId: config.nodeId,
              registry,
              localNode,
              clusterInfo: new ClusterInfoService(config, registry),
              certificates,
            }),
            ...caRotationHandlers(
              rpc,
              config.nodeId,
              new CaRotation(clusterTrustStore, config.tls.issuer),
            ),
          },
        },
        {
          definition: v1.VmService.service,
          handlers: {
            ...vmServiceHandlers(rpc, vms),
            Console: consoleHandler(rpc, consoles),
          },
        },
        {
          definition: v1.StorageService.service,
          handlers: storageServiceHandlers(
            rpc,
            new StorageService({
              clusterId: config.clusterId,
              nodeId: config.nodeId,
              driver: storage,
              vms,
              imageLocks,
              logger,
            }),
            new VmSnapshotService({
              nodeId: config.nodeId,
              hypervisor,
              storage,
              records: new VmSnapshotRepository(etcd),
              index: vmIndex,
              registry,
              peers,
              vmLocks,
              imageLocks,
              clock,
              logger,
            }),
          ),
        },
        {
          definition: v1.MigrationService.service,
          handlers: migrationServiceHandlers(rpc, migrations, migrationTarget, ha.failover),
        },
        { definition: v1.AccessService.service, handlers: accessServiceHandlers(rpc) },
        { definition: v1.HaService.service, handlers: haServiceHandlers(rpc, ha.service) },
        { definition: grpcHealthV1().Health.service, handlers: healthServiceHandlers(board) },
      ],
      // Migration data connections on the same port (ALPN debvisor-migration-data/1).
      (socket) => dataServer.accept(socket),
    );
    undo.unshift(() => server.stop(0));

    // A renewed certificate or a changed trust: new connections use it, open ones keep theirs.
    tls.onChange(() => {
      serverCredentials.refresh();
      peers.retireChannels();
      metricsServer?.refresh();
      metrics.recordCertificates(tls);
    });
    let metricsServer: RunningMetricsServer | undefined;
    if (config.metrics.enabled) {
      metricsServer = await startMetricsServer({
        listen: config.metrics.listen,
        tls,
        requireClientCert: config.metrics.requireClientCert,
        metrics,
        logger,
      });
      undo.unshift(() => metricsServer?.stop());
    }

    // Every (re-)registration republishes the VM location index, which a replaced etcd would lack,
    // and makes the VMs running here hold their disks.
    const presence = new NodePresence(
      config.nodeId,
      registry,
      localNode,
      config.heartbeatIntervalSeconds * 1000,
      logger,
      async () => {
        await ha.beforePublish(); // a fenced node's old VMs never reclaim the location index
        await vms.publishLocalVms();
        await vms.holdRunningVmDisks();
      },
    );
    presenceOf.node = presence;
    await presence.start();
    ha.startCoordinator();
    if (config.tls.renew) {
      renewer.start();
      undo.unshift(() => renewer.stop());
    }
    const clusterTrust = new ClusterTrust({
      store: clusterTrustStore,
      tls,
      files: tlsFiles,
      renewer,
      random: Math.random,
      logger,
    });
    await clusterTrust.start();
    undo.unshift(() => clusterTrust.stop());
    for (const work of background) {
      work.start();
      undo.unshift(() => work.stop());
    }
    lifecycleLogger(logger).info(
      {
        listen: config.listen,
        advertise: config.advertise,
        port: server.port,
        metrics: metricsServer ? config.metrics.listen : 'disabled',
        metricsPort: metricsServer?.port,
      },
      'agent ready',
    ); // nodeId: in every line

    return {
      port: server.port,
      metricsPort: metricsServer?.port,
      async stop() {
        await monitor.stop(); // health checks answer NOT_SERVING from here on: load balancers drain
        await ha.stop();
        await clusterTrust.stop();
        await renewer.stop();
        await presence.stop();
        for (const work of background) await work.stop();
        await migrationSource.close(); // migrations under way are cancelled: their VMs keep running here
        await server.stop(SHUTDOWN_GRACE_MS);
        await migrationTarget.close();
        await metricsServer?.stop();
        peers.close();
        await apiKeys.settle();
        await revokedNodes.stop();
        await auditFile?.close();
        await hypervisor.close();
        etcd.close();
      },
    };
  } catch (error) {
    for (const step of undo) await Promise.resolve(step()).catch(() => undefined);
    throw error;
  }
}
