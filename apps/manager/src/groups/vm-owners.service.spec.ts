import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { AuditService } from '../audit/audit.service';
import type { CallerCache } from '../authz/caller-cache';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { GroupsRepository } from './groups.repository';
import type { GroupEntity } from './group.entity';
import { VmOwnersService } from './vm-owners.service';

const NOW = new Date('2026-05-01T12:00:00Z');
const VM = '3f1d2c4b-5a6e-4f70-8a9b-0c1d2e3f4a5b';
const GROUPS: Record<string, GroupEntity> = {
  'tenant-acme': {
    id: 'tenant-acme',
    comment: '',
    tenant: true,
    requireTfa: false,
    createdAt: NOW,
  },
  ops: { id: 'ops', comment: '', tenant: false, requireTfa: false, createdAt: NOW },
};

function setup(repository: Parameters<typeof strictMock<GroupsRepository>>[1] = {}) {
  const invalidations: number[] = [];
  const service = new VmOwnersService(
    strictMock<GroupsRepository>('GroupsRepository', {
      findGroup: async (id) => GROUPS[id] ?? null,
      ...repository,
    }),
    strictMock<CallerCache>('CallerCache', { invalidate: () => void invalidations.push(1) }),
    strictMock<AuditService>('AuditService', { note: () => undefined }),
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
  );
  return { service, invalidations };
}

async function errorOf(promise: Promise<unknown>): Promise<DomainError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
  throw new Error('expected a domain error');
}

describe('VmOwnersService', () => {
  it('gives a VM to a tenant group and forgets cached callers', async () => {
    const sets: unknown[][] = [];
    const { service, invalidations } = setup({
      setVmOwner: async (vmUuid, tenantGroup, at) => (
        sets.push([vmUuid, tenantGroup, at]),
        { vmUuid, tenantGroup, createdAt: at }
      ),
    });
    expect(await service.set(VM, 'tenant-acme')).toEqual({
      vm: VM,
      tenantGroup: 'tenant-acme',
      createdAt: NOW.toISOString(),
    });
    expect(sets).toEqual([[VM, 'tenant-acme', NOW]]);
    expect(invalidations).toHaveLength(1);
  });

  it('refuses a group that is not a tenant group (400) or does not exist (404)', async () => {
    const { service, invalidations } = setup();
    const plain = await errorOf(service.set(VM, 'ops'));
    expect(plain.code).toBe(ErrorCode.ValidationFailed);
    expect(plain.message).toContain('not a tenant group');
    expect((await errorOf(service.set(VM, 'nobody'))).code).toBe(ErrorCode.NotFound);
    expect(invalidations).toEqual([]);
  });

  it('clears an ownership, and answers 404 when the VM has none', async () => {
    const { service, invalidations } = setup({ deleteVmOwner: async (vm) => vm === VM });
    await service.clear(VM);
    expect(invalidations).toHaveLength(1);
    expect((await errorOf(service.clear('00000000-0000-4000-8000-000000000000'))).code).toBe(
      ErrorCode.NotFound,
    );
  });

  it('lists ownerships of one group', async () => {
    const { service } = setup({
      listVmOwners: async (group) =>
        group === 'tenant-acme' ? [{ vmUuid: VM, tenantGroup: 'tenant-acme', createdAt: NOW }] : [],
    });
    expect((await service.list('tenant-acme')).items).toEqual([
      { vm: VM, tenantGroup: 'tenant-acme', createdAt: NOW.toISOString() },
    ]);
  });
});
