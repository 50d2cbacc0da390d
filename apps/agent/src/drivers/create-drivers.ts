import { join } from 'node:path';
import { ipAddressSchema, parseEndpoint } from '@debvisor/common';
import type { Etcd3 } from 'etcd3';
import { ConfigError } from '../config/agent-config.loader';
import type { AgentConfig } from '../config/agent-config.schema';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import { AGENT_VERSION } from '../shared/version';
import type { HostFacts, HypervisorDriver } from './hypervisor.driver';
import { LibvirtHypervisorDriver } from './libvirt/libvirt-hypervisor.driver';
import type { RbdAccess } from './qemu/qemu-argv';
import { QemuHypervisorDriver } from './qemu/qemu-hypervisor.driver';
import { RbdCliRepository } from './rbd/rbd-cli.repository';
import { RbdMirroring } from './rbd/rbd-mirroring';
import { RbdStorageDriver } from './rbd/rbd-storage.driver';
import { SimHypervisorDriver } from './sim/sim-hypervisor.driver';
import { seedSimVms } from './sim/sim-seed';
import { SimStateRepository } from './sim/sim-state.repository';
import { SimDiskWriter } from './sim/sim-disk-writer';
import { SimRbdMirrorDaemon } from './sim/sim-rbd-mirror.daemon';
import { SimStorageDriver } from './sim/sim-storage.driver';
import type { StorageDriver } from './storage.driver';

export interface Drivers {
  hypervisor: HypervisorDriver;
  storage: StorageDriver;
  /** The drivers' own background work (sim: rbd-mirror, VMs writing to their disks), started with the agent. */
  background: BackgroundWork[];
}

export interface BackgroundWork {
  start(): void;
  stop(): Promise<void>;
}

/** The drivers the configuration names, opened (the sim hypervisor seeds its VMs on a first start). */
export async function createDrivers(
  config: Readonly<AgentConfig>,
  etcd: Etcd3,
  clock: Clock,
  logger: Logger,
): Promise<Drivers> {
  const storage = createStorage(config, etcd, clock);
  const hypervisor = await createHypervisor(config, storage, clock);
  const background: BackgroundWork[] = [];
  if (storage instanceof SimStorageDriver) {
    const mirrorLog = logger.child({ component: 'sim-rbd-mirror' });
    background.push(
      new SimRbdMirrorDaemon({
        driver: storage,
        etcd,
        nodeId: config.nodeId,
        intervalMs: config.sim.mirror.replayIntervalMs,
        clock,
        logger: mirrorLog,
      }),
    );
    background.push({ start: () => undefined, stop: async () => storage.close() }); // its peer connections
    if (hypervisor.name === 'sim' && config.sim.diskWriteIntervalMs > 0)
      background.push(
        new SimDiskWriter(hypervisor, storage, config.sim.diskWriteIntervalMs, logger),
      );
  }
  return { hypervisor, storage, background };
}

function createStorage(config: Readonly<AgentConfig>, etcd: Etcd3, clock: Clock): StorageDriver {
  switch (config.storage.driver) {
    case 'sim': {
      const { replayIntervalMs, peerTimeoutMs } = config.sim.mirror;
      return new SimStorageDriver({
        etcd,
        clock,
        clusterId: config.clusterId,
        nodeId: config.nodeId,
        etcdEndpoints: config.etcd.endpoints,
        // Peer sites' etcds are reached with this agent's own etcd client certificate.
        peerEtcd: { tls: config.etcd.tls },
        peerTimeoutMs,
        // A report is stale after three missed rounds, or one round that waited out a peer and then some.
        staleAfterMs: Math.max(3 * replayIntervalMs, peerTimeoutMs + 2 * replayIntervalMs),
      });
    }
    case 'rbd': {
      const rbd = config.rbd;
      const cli = new RbdCliRepository({
        cluster: rbd.cluster,
        conf: rbd.conf,
        keyring: rbd.keyring,
        clientId: rbd.clientId,
        rbdBinary: rbd.rbdBinary,
        cephBinary: rbd.cephBinary,
        radosBinary: rbd.radosBinary,
        timeoutMs: rbd.commandTimeoutSeconds * 1000,
        peerTimeoutMs: rbd.peerTimeoutSeconds * 1000,
      });
      const mirroring = new RbdMirroring({
        cli,
        clock,
        commandTimeoutMs: rbd.commandTimeoutSeconds * 1000,
        peerTimeoutMs: rbd.peerTimeoutSeconds * 1000,
        defaultSiteName: config.clusterId,
        // A demotion is refused while a VM holds the image: the driver's VM lock names it.
        imageHolder: (ref) => driver.imageHolder(ref),
      });
      const driver: RbdStorageDriver = new RbdStorageDriver(cli, mirroring);
      return driver;
    }
    default:
      throw new ConfigError(
        `storage.driver: "${config.storage.driver}" is not available in this version`,
      );
  }
}

async function createHypervisor(
  config: Readonly<AgentConfig>,
  storage: StorageDriver,
  clock: Clock,
): Promise<HypervisorDriver> {
  switch (config.hypervisor.driver) {
    case 'sim':
      return SimHypervisorDriver.open({
        state: new SimStateRepository(config.stateDir),
        clock,
        timeScale: config.sim.timeScale,
        migrationBandwidthBytes: config.sim.migrationBandwidthBytes,
        facts: simFacts(config),
        // A file named after a VM's uuid here crashes it (tests of the HA restart policy).
        crashRequests: join(config.stateDir, 'sim-crash'),
        seed: () =>
          seedSimVms({
            count: config.sim.seedVms,
            nodeId: config.nodeId,
            bridges: config.sim.bridges,
            storage,
            now: clock.now(),
          }),
      });
    case 'libvirt':
      return LibvirtHypervisorDriver.fromConfig(config.libvirt, clock);
    case 'qemu':
      return QemuHypervisorDriver.open({
        config: config.qemu,
        stateDir: config.stateDir,
        clock,
        rbd: rbdAccess(config.rbd),
      });
    default:
      throw new ConfigError(
        `hypervisor.driver: "${config.hypervisor.driver}" is not available in this version`,
      );
  }
}

/** How QEMU's librbd reaches the cluster the rbd driver uses: a cluster name other than 'ceph' means its own ceph.conf. */
function rbdAccess(rbd: Readonly<AgentConfig['rbd']>): RbdAccess {
  const conf = rbd.conf ?? (rbd.cluster === 'ceph' ? undefined : `/etc/ceph/${rbd.cluster}.conf`);
  return { clientId: rbd.clientId, conf, keyring: rbd.keyring };
}

/** The configured facts of a simulated node; its host name is its node id. */
function simFacts(config: Readonly<AgentConfig>): HostFacts {
  const host = parseEndpoint(config.advertise)?.host ?? '';
  return {
    hostname: config.nodeId,
    fqdn: `${config.nodeId}.${config.clusterId}.debvisor.test`,
    addresses: ipAddressSchema.safeParse(host).success ? [host] : [],
    cpuModel: config.sim.cpu.model,
    cpuFlags: [...config.sim.cpu.flags],
    cpuCount: config.sim.cpu.count,
    memoryBytes: config.sim.memoryBytes,
    hugepages: { ...config.sim.hugepages },
    bridges: [...config.sim.bridges],
    versions: { sim: AGENT_VERSION },
  };
}
