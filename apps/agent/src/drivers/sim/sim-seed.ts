import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import { forEachLimit } from '../../shared/concurrency';
import type { VmDefinition } from '../hypervisor.driver';
import type { StorageDriver } from '../storage.driver';
import { HUNG_GUEST_LABEL } from './sim-hypervisor.driver';
import type { SimVmRecord } from './sim-state.repository';

const GiB = 1024 ** 3;
export const SEED_POOL = 'rbd';
const SEED_CONCURRENCY = 16;

interface Profile {
  role: string;
  vcpus: number;
  memoryGiB: number;
  diskGiB: number[];
  cpuModel: string;
  hugepages?: boolean;
}

const PROFILES: Profile[] = [
  { role: 'web', vcpus: 2, memoryGiB: 4, diskGiB: [40], cpuModel: 'x86-64-v2' },
  {
    role: 'db',
    vcpus: 8,
    memoryGiB: 32,
    diskGiB: [60, 500],
    cpuModel: 'host-model',
    hugepages: true,
  },
  { role: 'cache', vcpus: 2, memoryGiB: 8, diskGiB: [20], cpuModel: 'x86-64-v3' },
  { role: 'app', vcpus: 4, memoryGiB: 8, diskGiB: [60], cpuModel: 'x86-64-v3' },
  { role: 'mq', vcpus: 2, memoryGiB: 4, diskGiB: [50], cpuModel: 'x86-64-v2' },
  { role: 'ci-runner', vcpus: 8, memoryGiB: 16, diskGiB: [120], cpuModel: 'host-model' },
  { role: 'mail', vcpus: 2, memoryGiB: 4, diskGiB: [80], cpuModel: 'x86-64-v2' },
  { role: 'dns', vcpus: 1, memoryGiB: 1, diskGiB: [10], cpuModel: 'x86-64-v2' },
  { role: 'monitor', vcpus: 2, memoryGiB: 6, diskGiB: [100], cpuModel: 'x86-64-v3' },
  { role: 'backup', vcpus: 2, memoryGiB: 4, diskGiB: [20, 2000], cpuModel: 'x86-64-v2' },
  { role: 'lb', vcpus: 2, memoryGiB: 2, diskGiB: [10], cpuModel: 'x86-64-v2' },
  { role: 'files', vcpus: 4, memoryGiB: 8, diskGiB: [40, 1000], cpuModel: 'x86-64-v3' },
];
const TENANTS = ['tenant-acme', 'tenant-globex', '', 'tenant-initech', 'tenant-acme', ''];
const ENVIRONMENTS = ['prod', 'prod', 'staging', 'prod', 'dev'];

export interface SeedOptions {
  count: number;
  nodeId: string;
  bridges: readonly string[];
  storage: Pick<StorageDriver, 'createImage'>;
  now: Date;
}

/**
 * The VMs of a simulated node's first start: realistic names (web-01, db-01, …) unique in the
 * cluster (a name is taken by creating its first disk image, which fails when another node holds
 * it), tenants, RBD disks in pool `rbd`, NICs on the configured bridges; two thirds of them running.
 * Every sixth VM (the fifth, eleventh, …) has a guest that ignores ACPI (label sim-guest: hung).
 */
export async function seedSimVms(options: SeedOptions): Promise<SimVmRecord[]> {
  const offset = createHash('sha256').update(options.nodeId).digest().readUInt8(0);
  const bridges = options.bridges.length > 0 ? options.bridges : ['vmbr0'];
  const records: SimVmRecord[] = new Array(options.count);
  const numbers = new Map<string, number>();
  /** Hands out role numbers in this process; other nodes' claims show up as existing images. */
  const reserve = (role: string) => {
    const n = numbers.get(role) ?? 1;
    numbers.set(role, n + 1);
    return `${role}-${String(n).padStart(2, '0')}`;
  };
  const indexes = Array.from({ length: options.count }, (_, i) => i);
  await forEachLimit(indexes, SEED_CONCURRENCY, async (i) => {
    const profile = PROFILES[(i + offset) % PROFILES.length];
    const name = await claimName(profile, reserve, options.storage);
    const disks = [
      {
        pool: SEED_POOL,
        image: `${name}-disk0`,
        sizeBytes: profile.diskGiB[0] * GiB,
        bus: 'virtio' as const,
      },
    ];
    for (const [n, size] of profile.diskGiB.slice(1).entries()) {
      const image = `${name}-disk${n + 1}`;
      await options.storage.createImage(SEED_POOL, image, size * GiB);
      disks.push({ pool: SEED_POOL, image, sizeBytes: size * GiB, bus: 'virtio' });
    }
    const labels: Record<string, string> = {
      role: profile.role,
      env: ENVIRONMENTS[(i + offset) % ENVIRONMENTS.length],
    };
    if (i % 6 === 4) labels[HUNG_GUEST_LABEL] = 'hung';
    const spec: VmDefinition = {
      uuid: randomUUID(),
      name,
      vcpus: profile.vcpus,
      memoryBytes: profile.memoryGiB * GiB,
      disks,
      nics: [
        {
          mac: randomMac(),
          bridge: bridges[i % bridges.length],
          model: 'virtio',
          vlan: i % 3 === 0 ? 0 : 100 + (i % 4) * 10,
        },
      ],
      cpuModel: profile.cpuModel,
      hugepages: profile.hugepages ?? false,
      tenant: TENANTS[(i + offset) % TENANTS.length],
      labels,
    };
    const running = i % 3 !== 2;
    const bootedAt = new Date(
      options.now.getTime() - (3600 + ((offset * 7919 + i * 104729) % (30 * 86400))) * 1000,
    ).toISOString();
    records[i] = {
      spec,
      state: running ? 'running' : 'stopped',
      stateChangedAt: running ? bootedAt : options.now.toISOString(),
      bootedAt: running ? bootedAt : null,
      transition: null,
    };
  });
  return records;
}

/** The next free `<role>-NN`: creating its first disk image claims it cluster-wide. */
async function claimName(
  profile: Profile,
  reserve: (role: string) => string,
  storage: Pick<StorageDriver, 'createImage'>,
): Promise<string> {
  for (let attempt = 0; attempt < 10_000; attempt++) {
    const name = reserve(profile.role);
    try {
      await storage.createImage(SEED_POOL, `${name}-disk0`, profile.diskGiB[0] * GiB);
      return name;
    } catch (error) {
      if (!(error instanceof AgentError && error.code === ErrorCode.AlreadyExists)) throw error;
    }
  }
  throw new AgentError(ErrorCode.Internal, `no free VM name for role ${profile.role}`);
}

function randomMac(): string {
  return [
    '52',
    '54',
    '00',
    ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')),
  ].join(':');
}
