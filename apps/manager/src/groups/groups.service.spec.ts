import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { AuditService } from '../audit/audit.service';
import type { AclService } from '../acl/acl.service';
import type { CallerCache } from '../authz/caller-cache';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { UnitOfWork } from '../database/unit-of-work.repository';
import type { TokensService } from '../tokens/tokens.service';
import type { GroupEntity } from './group.entity';
import { createGroupSchema } from './groups.dto';
import type { GroupsRepository } from './groups.repository';
import { GroupsService } from './groups.service';

const NOW = new Date('2026-05-01T12:00:00Z');

function group(id: string, extra: Partial<GroupEntity> = {}): GroupEntity {
  return { id, comment: '', tenant: false, requireTfa: false, createdAt: NOW, ...extra };
}

function setup(repository: Parameters<typeof strictMock<GroupsRepository>>[1] = {}) {
  const invalidations: number[] = [];
  const service = new GroupsService(
    strictMock<GroupsRepository>('GroupsRepository', repository),
    strictMock<TokensService>('TokensService', { removeOwnedBy: async () => undefined }),
    strictMock<AclService>('AclService', { removeGrantsOf: async () => undefined }),
    strictMock<UnitOfWork>('UnitOfWork', { run: (work) => work() }),
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

describe('GroupsService', () => {
  it('lists groups with their member counts', async () => {
    const { service } = setup({ listGroups: async () => [{ ...group('ops'), memberCount: 3 }] });
    expect(await service.list()).toEqual({
      items: [
        {
          id: 'ops',
          comment: '',
          tenant: false,
          requireTfa: false,
          createdAt: NOW.toISOString(),
          memberCount: 3,
        },
      ],
    });
  });

  it('creates a group, and answers 409 when the id is taken', async () => {
    const inserted: GroupEntity[] = [];
    const { service, invalidations } = setup({
      insertGroup: async (g) => (inserted.push(g), inserted.length === 1),
    });
    const answer = await service.create(
      createGroupSchema.parse({ id: 'tenant-acme', tenant: true }),
    );
    expect(answer).toMatchObject({ id: 'tenant-acme', tenant: true, members: [] });
    expect(inserted[0]).toEqual(group('tenant-acme', { tenant: true }));
    expect(invalidations).toHaveLength(1);
    expect(
      (await errorOf(service.create(createGroupSchema.parse({ id: 'tenant-acme' })))).code,
    ).toBe(ErrorCode.Conflict);
  });

  it('keeps a tenant group that owns VMs a tenant group (its grants would otherwise hold on every VM)', async () => {
    const { service, invalidations } = setup({
      findGroup: async () => group('tenant-acme', { tenant: true }),
      countVmsOwnedBy: async () => 2,
    });
    const error = await errorOf(service.update('tenant-acme', { tenant: false }));
    expect(error.code).toBe(ErrorCode.Conflict);
    expect(error.message).toContain('owns 2 VM(s)');
    expect(invalidations).toEqual([]);
  });

  it('changes a group and answers it with its members and their sources', async () => {
    const patches: unknown[] = [];
    const { service } = setup({
      findGroup: async () => group('ops'),
      updateGroup: async (_id, patch) => void patches.push(patch),
      membersOf: async () => [
        { groupId: 'ops', userId: 'alice@corp', source: 'corp' },
        { groupId: 'ops', userId: 'bob@local', source: 'local' },
      ],
    });
    const answer = await service.update('ops', { requireTfa: true, comment: 'operators' });
    expect(patches).toEqual([{ requireTfa: true, comment: 'operators' }]);
    expect(answer.members).toEqual([
      { user: 'alice@corp', source: 'corp' },
      { user: 'bob@local', source: 'local' },
    ]);
  });

  it('replaces the local members after checking every user exists', async () => {
    const replaced: unknown[][] = [];
    const { service, invalidations } = setup({
      findGroup: async () => group('ops'),
      existingUsers: async (ids) => new Set(ids.filter((id) => id !== 'ghost@local')),
      replaceLocalMembers: async (...args) => void replaced.push(args),
      membersOf: async () => [],
    });
    const missing = await errorOf(service.setMembers('ops', ['alice@local', 'ghost@local']));
    expect(missing.code).toBe(ErrorCode.NotFound);
    expect(missing.message).toBe('user ghost@local not found');
    expect(replaced).toEqual([]);
    await service.setMembers('ops', ['alice@local']);
    expect(replaced).toEqual([['ops', ['alice@local']]]);
    expect(invalidations).toHaveLength(1);
  });

  it('answers 404 for unknown groups', async () => {
    const { service } = setup({ findGroup: async () => null, deleteGroup: async () => false });
    expect((await errorOf(service.get('nope'))).code).toBe(ErrorCode.NotFound);
    expect((await errorOf(service.delete('nope'))).code).toBe(ErrorCode.NotFound);
    expect((await errorOf(service.setMembers('nope', []))).code).toBe(ErrorCode.NotFound);
  });

  it('deletes a group and forgets cached callers', async () => {
    const { service, invalidations } = setup({ deleteGroup: async (id) => id === 'ops' });
    await service.delete('ops');
    expect(invalidations).toHaveLength(1);
  });
});
