import { describe, expect, it } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import { vmDefinitionSchema } from '../hypervisor.driver';
import type { StorageDriver } from '../storage.driver';
import { seedSimVms } from './sim-seed';

function storageWith(taken: string[]) {
  const images = new Set(taken);
  return strictMock<Pick<StorageDriver, 'createImage'>>('StorageDriver', {
    createImage: async (pool, image, sizeBytes) => {
      if (images.has(`${pool}/${image}`)) throw new AgentError(ErrorCode.AlreadyExists, 'exists');
      images.add(`${pool}/${image}`);
      return { pool, image, sizeBytes, createdAt: '' };
    },
  });
}

describe('sim VM seeding', () => {
  it('creates valid VMs with realistic names, tenants and disks in pool rbd, most of them running', async () => {
    const records = await seedSimVms({
      count: 12,
      nodeId: 'node-1',
      bridges: ['vmbr0', 'vmbr1'],
      storage: storageWith([]),
      now: new Date(),
    });
    expect(records).toHaveLength(12);
    for (const record of records) {
      expect(vmDefinitionSchema.safeParse(record.spec).success).toBe(true);
      expect(record.spec.name).toMatch(/^[a-z-]+-\d\d$/);
      expect(record.spec.disks.every((d) => d.pool === 'rbd')).toBe(true);
    }
    expect(new Set(records.map((r) => r.spec.name)).size).toBe(12);
    expect(records.filter((r) => r.state === 'running')).toHaveLength(8);
    expect(new Set(records.map((r) => r.spec.tenant))).toEqual(
      new Set(['tenant-acme', 'tenant-globex', 'tenant-initech', '']),
    );
    expect(records.filter((r) => r.spec.labels['sim-guest'] === 'hung')).toHaveLength(2);
  });

  it('takes the next free name when another node claimed one through its disk image', async () => {
    const first = await seedSimVms({
      count: 1,
      nodeId: 'node-1',
      bridges: [],
      storage: storageWith([]),
      now: new Date(),
    });
    const name = first[0].spec.name;
    const role = name.replace(/-\d\d$/, '');
    const records = await seedSimVms({
      count: 1,
      nodeId: 'node-1',
      bridges: [],
      storage: storageWith([`rbd/${name}-disk0`]),
      now: new Date(),
    });
    expect(records[0].spec.name).toBe(`${role}-02`);
  });
});
