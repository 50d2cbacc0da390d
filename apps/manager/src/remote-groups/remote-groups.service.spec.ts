import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { AuditService } from '../audit/audit.service';
import type { AclService } from '../acl/acl.service';
import type { CallerCache } from '../authz/caller-cache';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { UnitOfWork } from '../database/unit-of-work.repository';
import { createRemoteGroupSchema } from './remote-groups.dto';
import type { RemoteGroupsRepository } from './remote-groups.repository';
import { RemoteGroupsService } from './remote-groups.service';

const NOW = new Date('2026-05-01T12:00:00Z');
const CREDENTIALS = [
  { id: 'c-east-admin', remoteId: 'east', name: 'admin' },
  { id: 'c-east-reader', remoteId: 'east', name: 'reader' },
  { id: 'c-west-reader', remoteId: 'west', name: 'reader' },
];

function setup(repository: Parameters<typeof strictMock<RemoteGroupsRepository>>[1] = {}) {
  const invalidations: number[] = [];
  const service = new RemoteGroupsService(
    strictMock<RemoteGroupsRepository>('RemoteGroupsRepository', {
      existingRemotes: async (ids) => new Set(ids.filter((id) => id === 'east' || id === 'west')),
      credentialsOf: async (ids) => CREDENTIALS.filter((c) => ids.includes(c.remoteId)),
      ...repository,
    }),
    strictMock<AclService>('AclService', { removeGrantsOn: async () => undefined }),
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

describe('RemoteGroupsService', () => {
  it('stores the credential ids of the named credentials of each remote', async () => {
    const created: unknown[][] = [];
    const { service, invalidations } = setup({
      create: async (...args) => (created.push(args), true),
      get: async (id) => ({
        id,
        comment: '',
        createdAt: NOW,
        entries: [{ remoteId: 'east', credentialId: 'c-east-reader', credentialName: 'reader' }],
      }),
    });
    const answer = await service.create(
      createRemoteGroupSchema.parse({
        id: 'readers',
        entries: [
          { remote: 'east', credential: 'reader' },
          { remote: 'west', credential: 'reader' },
        ],
      }),
    );
    expect(created).toEqual([
      [
        { id: 'readers', comment: '', createdAt: NOW },
        [
          { remoteId: 'east', credentialId: 'c-east-reader' },
          { remoteId: 'west', credentialId: 'c-west-reader' },
        ],
      ],
    ]);
    expect(answer.entries).toEqual([{ remote: 'east', credential: 'reader' }]);
    expect(invalidations).toHaveLength(1);
  });

  it('answers 404 for an unknown remote and for a credential of another remote', async () => {
    const { service, invalidations } = setup();
    const remote = await errorOf(
      service.create(
        createRemoteGroupSchema.parse({
          id: 'g',
          entries: [{ remote: 'north', credential: 'admin' }],
        }),
      ),
    );
    expect(remote.code).toBe(ErrorCode.NotFound);
    expect(remote.message).toBe('remote north not found');
    const credential = await errorOf(
      service.create(
        createRemoteGroupSchema.parse({
          id: 'g',
          entries: [{ remote: 'west', credential: 'admin' }],
        }),
      ),
    );
    expect(credential.code).toBe(ErrorCode.NotFound);
    expect(credential.message).toBe('credential admin of remote west not found');
    expect(invalidations).toEqual([]);
  });

  it('answers 409 for an existing id', async () => {
    const { service } = setup({ create: async () => false });
    expect(
      (await errorOf(service.create(createRemoteGroupSchema.parse({ id: 'g', entries: [] })))).code,
    ).toBe(ErrorCode.Conflict);
  });

  it('refuses a remote twice in one group', () => {
    expect(
      createRemoteGroupSchema.safeParse({
        id: 'g',
        entries: [
          { remote: 'east', credential: 'admin' },
          { remote: 'east', credential: 'reader' },
        ],
      }).success,
    ).toBe(false);
  });

  it('replaces the entries of an existing group, and answers 404 for an unknown one', async () => {
    const replaced: unknown[][] = [];
    const { service } = setup({
      get: async (id) => (id === 'g' ? { id, comment: 'c', createdAt: NOW, entries: [] } : null),
      replace: async (...args) => (replaced.push(args), true),
    });
    await service.update('g', { entries: [{ remote: 'east', credential: 'admin' }] });
    expect(replaced).toEqual([
      ['g', undefined, [{ remoteId: 'east', credentialId: 'c-east-admin' }]],
    ]);
    expect((await errorOf(service.update('nope', { entries: [] }))).code).toBe(ErrorCode.NotFound);
  });

  it('deletes a group and forgets cached callers', async () => {
    const { service, invalidations } = setup({ delete: async (id) => id === 'g' });
    await service.delete('g');
    expect(invalidations).toHaveLength(1);
    expect((await errorOf(service.delete('nope'))).code).toBe(ErrorCode.NotFound);
  });
});
