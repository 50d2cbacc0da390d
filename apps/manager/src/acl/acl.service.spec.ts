import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { AuditService } from '../audit/audit.service';
import type { CallerCache } from '../authz/caller-cache';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { RandomRepository } from '../common/random.repository';
import type { AclRepository } from './acl.repository';
import type { AclEntryEntity } from './acl-entry.entity';
import { aclPathProblem, aclPathSchema, putAclSchema } from './acl.dto';
import { AclService } from './acl.service';

const NOW = new Date('2026-05-01T12:00:00Z');
const VM = '3f1d2c4b-5a6e-4f70-8a9b-0c1d2e3f4a5b';

function setup(repository: Parameters<typeof strictMock<AclRepository>>[1] = {}) {
  const invalidations: number[] = [];
  const service = new AclService(
    strictMock<AclRepository>('AclRepository', repository),
    strictMock<CallerCache>('CallerCache', { invalidate: () => void invalidations.push(1) }),
    strictMock<AuditService>('AuditService', { note: () => undefined }),
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
    strictMock<RandomRepository>('RandomRepository', {
      uuid: () => '00000000-0000-4000-8000-000000000001',
    }),
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

describe('ACL paths', () => {
  it('accepts exactly the documented forms', () => {
    for (const path of [
      '/',
      '/remotes',
      '/remotes/dc-east',
      '/remotes/dc-east/vms',
      `/remotes/dc-east/vms/${VM}`,
      '/groups',
      '/groups/readers',
      '/access',
      '/system',
    ]) {
      expect(aclPathProblem(path), path).toBeUndefined();
    }
  });

  it('refuses anything else: unknown roots, dot segments, encodings, trailing slashes, bad ids', () => {
    for (const path of [
      '',
      'remotes',
      '/foo',
      '/remotes/',
      '//',
      '/remotes/../x',
      '/remotes/./x',
      '/remotes/%2e%2e',
      '/remotes/Dc-East',
      '/remotes/-x',
      '/remotes/x/nodes',
      '/remotes/x/vms/42',
      `/remotes/x/vms/${VM}/disks`,
      '/groups/a/b',
      '/groups/A',
      '/access/users',
      '/system/',
    ]) {
      expect(aclPathProblem(path), path).toBeDefined();
    }
  });

  it('lower-cases a VM uuid so that it matches route parameters', () => {
    expect(aclPathSchema.parse(`/remotes/x/vms/${VM.toUpperCase()}`)).toBe(`/remotes/x/vms/${VM}`);
  });

  it('checks the principal against its type', () => {
    const base = { path: '/', role: 'Audit' };
    expect(
      putAclSchema.safeParse({ ...base, principalType: 'user', principal: 'alice@local' }).success,
    ).toBe(true);
    expect(
      putAclSchema.safeParse({ ...base, principalType: 'user', principal: 'alice' }).success,
    ).toBe(false);
    expect(
      putAclSchema.safeParse({ ...base, principalType: 'group', principal: 'ops@local' }).success,
    ).toBe(false);
    expect(
      putAclSchema.safeParse({ ...base, principalType: 'token', principal: '0123456789abcdef' })
        .success,
    ).toBe(true);
    expect(
      putAclSchema.safeParse({ ...base, principalType: 'token', principal: 'alice@local' }).success,
    ).toBe(false);
    expect(
      putAclSchema.parse({ ...base, principalType: 'group', principal: 'ops' }).propagate,
    ).toBe(true);
  });
});

describe('AclService', () => {
  it('upserts an entry for an existing principal and forgets cached callers', async () => {
    const upserts: AclEntryEntity[] = [];
    const { service, invalidations } = setup({
      principalExists: async (type, id) => type === 'group' && id === 'ops',
      upsertAcl: async (entry) => (
        upserts.push(entry),
        { ...entry, id: 'kept-id', createdAt: new Date('2026-01-01T00:00:00Z') }
      ),
    });
    const answer = await service.put(
      putAclSchema.parse({
        path: '/remotes/x',
        principalType: 'group',
        principal: 'ops',
        role: 'Manage',
        propagate: false,
      }),
    );
    expect(upserts).toEqual([
      {
        id: '00000000-0000-4000-8000-000000000001',
        path: '/remotes/x',
        principalType: 'group',
        principal: 'ops',
        role: 'Manage',
        propagate: false,
        createdAt: NOW,
      },
    ]);
    expect(answer).toEqual({
      path: '/remotes/x',
      principalType: 'group',
      principal: 'ops',
      role: 'Manage',
      propagate: false,
      createdAt: '2026-01-01T00:00:00.000Z',
    });
    expect(invalidations).toHaveLength(1);
  });

  it('answers 404 for a principal that does not exist, and stores nothing', async () => {
    const { service, invalidations } = setup({ principalExists: async () => false });
    const error = await errorOf(
      service.put(
        putAclSchema.parse({
          path: '/',
          principalType: 'user',
          principal: 'ghost@local',
          role: 'Admin',
        }),
      ),
    );
    expect(error.code).toBe(ErrorCode.NotFound);
    expect(error.message).toBe('user ghost@local not found');
    expect(invalidations).toEqual([]);
  });

  it('revokes the entry named in the body, else in the query, validating it as a whole', async () => {
    const deleted: unknown[][] = [];
    const { service, invalidations } = setup({
      deleteAcl: async (...args) => (deleted.push(args), true),
    });
    await service.revoke({
      query: { path: '/ignored' },
      body: { path: '/remotes/x', principalType: 'user', principal: 'alice@local' },
    });
    await service.revoke({
      query: {
        path: `/remotes/x/vms/${VM.toUpperCase()}`,
        principalType: 'group',
        principal: 'ops',
      },
      body: {},
    });
    expect(deleted).toEqual([
      ['/remotes/x', 'user', 'alice@local'],
      [`/remotes/x/vms/${VM}`, 'group', 'ops'],
    ]);
    expect(invalidations).toHaveLength(2);
    const incomplete = await errorOf(service.revoke({ query: {}, body: { path: '/remotes/x' } }));
    expect(incomplete.code).toBe(ErrorCode.ValidationFailed);
    expect(incomplete.message).toContain('principalType');
    expect(
      (
        await errorOf(
          service.revoke({
            query: { path: '/foo', principalType: 'user', principal: 'a@local' },
            body: undefined,
          }),
        )
      ).code,
    ).toBe(ErrorCode.ValidationFailed);
  });

  it('answers 404 when there is no such entry', async () => {
    const { service, invalidations } = setup({ deleteAcl: async () => false });
    expect(
      (
        await errorOf(
          service.revoke({
            query: { path: '/', principalType: 'user', principal: 'a@local' },
            body: {},
          }),
        )
      ).code,
    ).toBe(ErrorCode.NotFound);
    expect(invalidations).toEqual([]);
  });

  it('lists entries with the filter passed to the database', async () => {
    const filters: unknown[] = [];
    const { service } = setup({ listAcl: async (filter) => (filters.push(filter), []) });
    await service.list({ path: '/remotes/x', principal: 'ops' });
    expect(filters).toEqual([{ path: '/remotes/x', principal: 'ops' }]);
  });
});
