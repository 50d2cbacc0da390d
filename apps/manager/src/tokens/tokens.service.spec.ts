import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { AuditService } from '../audit/audit.service';
import { hashTokenSecret, parseApiToken } from './api-token';
import type { CallerCache } from '../authz/caller-cache';
import { testCaller } from '../../test/test-caller';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { RandomRepository } from '../common/random.repository';
import { loadConfig } from '../config/manager-config';
import type { AclEntryEntity } from '../acl/acl-entry.entity';
import type { AclRepository } from '../acl/acl.repository';
import { AclService } from '../acl/acl.service';
import type { ApiTokenEntity } from './api-token.entity';
import {
  createOwnTokenSchema,
  createTokenSchema,
  ownTokenAclSchema,
  updateTokenSchema,
} from './tokens.dto';
import type { TokensRepository } from './tokens.repository';
import { TokensService } from './tokens.service';

const NOW = new Date('2026-05-01T12:00:00Z');
const ID_BYTES = Buffer.from('0123456789abcdef', 'hex');
const SECRET_BYTES = Buffer.alloc(32, 7);
const SECRET = SECRET_BYTES.toString('base64url');
const ALICE = testCaller([], {
  kind: 'session',
  principal: 'alice@local',
  sessionId: 's',
  tokenId: null,
  tokenName: null,
  display: 'alice@local',
});

function token(extra: Partial<ApiTokenEntity> = {}): ApiTokenEntity {
  return {
    id: '0123456789abcdef',
    ownerType: 'user',
    principal: 'alice@local',
    name: 'ci',
    comment: '',
    limited: false,
    secretHash: hashTokenSecret(SECRET),
    createdAt: NOW,
    lastUsedAt: null,
    expiresAt: null,
    revokedAt: null,
    ...extra,
  };
}

/** The tokens' table and the ACL's (a real AclService over it), mocked by one set of methods. */
type Tables = Parameters<typeof strictMock<TokensRepository>>[1] &
  Parameters<typeof strictMock<AclRepository>>[1];

function setup(repository: Tables = {}) {
  const invalidations: number[] = [];
  const notes: Record<string, unknown>[] = [];
  const callers = strictMock<CallerCache>('CallerCache', {
    invalidate: () => void invalidations.push(1),
  });
  const audit = strictMock<AuditService>('AuditService', {
    note: (details) => void notes.push(details),
  });
  const clock = strictMock<ClockRepository>('ClockRepository', { now: () => NOW });
  const random = strictMock<RandomRepository>('RandomRepository', {
    bytes: (n) => (n === 8 ? ID_BYTES : SECRET_BYTES),
    uuid: () => '00000000-0000-4000-8000-000000000001',
  });
  const acl = new AclService(
    strictMock<AclRepository>('AclRepository', repository),
    callers,
    audit,
    clock,
    random,
  );
  const service = new TokensService(
    strictMock<TokensRepository>('TokensRepository', repository),
    acl,
    callers,
    audit,
    clock,
    random,
    loadConfig({}),
  );
  return { service, invalidations, notes };
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

describe('TokensService.create', () => {
  it('creates the caller’s own token: the whole token is answered once, only the SHA-256 of the secret is stored', async () => {
    const inserted: ApiTokenEntity[] = [];
    const { service, invalidations, notes } = setup({
      insertToken: async (t) => (inserted.push(t), 'inserted'),
    });
    const answer = await service.createMine(
      ALICE,
      createOwnTokenSchema.parse({ name: 'ci', limited: true, expiresAt: '2026-06-01T00:00:00Z' }),
    );
    expect(answer.token).toBe(`dvdm_0123456789abcdef_${SECRET}`);
    expect(parseApiToken(answer.token)).toEqual({ id: '0123456789abcdef', secret: SECRET });
    expect(answer).toMatchObject({
      id: '0123456789abcdef',
      name: 'ci',
      owner: 'alice@local',
      ownerType: 'user',
      display: 'alice@local!ci',
      limited: true,
      expiresAt: '2026-06-01T00:00:00.000Z',
    });
    expect(inserted[0]).toMatchObject({
      principal: 'alice@local',
      secretHash: hashTokenSecret(SECRET),
      limited: true,
    });
    expect(JSON.stringify(inserted)).not.toContain(SECRET);
    expect(JSON.stringify(notes)).not.toContain(SECRET);
    expect(notes).toEqual([
      {
        tokenId: '0123456789abcdef',
        token: 'alice@local!ci',
        limited: true,
        expiresAt: '2026-06-01T00:00:00.000Z',
      },
    ]);
    expect(invalidations).toHaveLength(1);
  });

  it('answers 409 when the owner already has a token of that name', async () => {
    const { service, invalidations } = setup({ insertToken: async () => 'taken' });
    const error = await errorOf(
      service.createMine(ALICE, createOwnTokenSchema.parse({ name: 'ci' })),
    );
    expect(error.code).toBe(ErrorCode.Conflict);
    expect(error.message).toContain('alice@local!ci already exists');
    expect(invalidations).toEqual([]);
  });

  it('refuses an expiry that is not in the future', async () => {
    const { service } = setup();
    const error = await errorOf(
      service.createMine(
        ALICE,
        createOwnTokenSchema.parse({ name: 'ci', expiresAt: NOW.toISOString() }),
      ),
    );
    expect(error.code).toBe(ErrorCode.ValidationFailed);
    expect(error.message).toBe('expiresAt: must be in the future');
  });

  it('lets an administrator create a group’s token, and answers 404 for an unknown owner', async () => {
    const inserted: ApiTokenEntity[] = [];
    const { service } = setup({
      principalExists: async (type, id) => type === 'group' && id === 'ops',
      insertToken: async (t) => (inserted.push(t), 'inserted'),
    });
    const answer = await service.create(
      createTokenSchema.parse({ ownerType: 'group', owner: 'ops', name: 'deploy' }),
    );
    expect(answer).toMatchObject({ ownerType: 'group', owner: 'ops', display: '@ops!deploy' });
    expect(inserted[0]).toMatchObject({ ownerType: 'group', principal: 'ops' });
    const error = await errorOf(
      service.create(
        createTokenSchema.parse({ ownerType: 'user', owner: 'ghost@local', name: 'x' }),
      ),
    );
    expect(error.code).toBe(ErrorCode.NotFound);
    expect(error.message).toBe('user ghost@local not found');
  });

  it('checks the owner id against the owner type', () => {
    expect(
      createTokenSchema.safeParse({ ownerType: 'user', owner: 'ops', name: 'x' }).success,
    ).toBe(false);
    expect(
      createTokenSchema.safeParse({ ownerType: 'group', owner: 'a@local', name: 'x' }).success,
    ).toBe(false);
  });
});

describe('TokensService listing', () => {
  it('lists tokens without their secret hash', async () => {
    const { service } = setup({ listTokens: async () => [token({ lastUsedAt: NOW })] });
    const answer = await service.listMine(ALICE);
    expect(answer.items).toEqual([
      {
        id: '0123456789abcdef',
        name: 'ci',
        ownerType: 'user',
        owner: 'alice@local',
        display: 'alice@local!ci',
        comment: '',
        limited: false,
        createdAt: NOW.toISOString(),
        lastUsedAt: NOW.toISOString(),
        expiresAt: null,
        revokedAt: null,
      },
    ]);
    expect(JSON.stringify(answer)).not.toContain(hashTokenSecret(SECRET));
  });

  it('asks for the caller’s own tokens only', async () => {
    const filters: unknown[] = [];
    const { service } = setup({ listTokens: async (filter) => (filters.push(filter), []) });
    await service.listMine(ALICE);
    await service.list({ ownerType: 'group' });
    expect(filters).toEqual([{ ownerType: 'user', owner: 'alice@local' }, { ownerType: 'group' }]);
  });
});

describe('TokensService changes', () => {
  it('lets the owner change and revoke its token, and answers 404 for another’s as if it did not exist', async () => {
    const updates: unknown[][] = [];
    const revokes: unknown[][] = [];
    const tokens = new Map([
      ['0123456789abcdef', token()],
      ['fedcba9876543210', token({ id: 'fedcba9876543210', principal: 'bob@local' })],
    ]);
    const { service, invalidations } = setup({
      findToken: async (id) => tokens.get(id) ?? null,
      updateToken: async (...args) => void updates.push(args),
      revokeToken: async (...args) => (revokes.push(args), true),
    });
    const changed = await service.updateMine(
      ALICE,
      '0123456789abcdef',
      updateTokenSchema.parse({ comment: 'CI', limited: true, expiresAt: null }),
    );
    expect(updates).toEqual([
      ['0123456789abcdef', { comment: 'CI', limited: true, expiresAt: null }],
    ]);
    expect(changed).toMatchObject({ comment: 'CI', limited: true, expiresAt: null });
    const foreign = await errorOf(
      service.updateMine(ALICE, 'fedcba9876543210', { comment: 'mine' }),
    );
    expect(foreign.code).toBe(ErrorCode.NotFound);
    expect((await errorOf(service.revokeMine(ALICE, 'fedcba9876543210'))).code).toBe(
      ErrorCode.NotFound,
    );
    await service.revokeMine(ALICE, '0123456789abcdef');
    expect(revokes).toEqual([['0123456789abcdef', NOW]]);
    await service.revoke('fedcba9876543210');
    expect(revokes).toHaveLength(2);
    expect(invalidations).toHaveLength(3);
  });

  it('refuses to change a revoked token and an expiry in the past', async () => {
    const { service } = setup({
      findToken: async (id) =>
        id === '0123456789abcdef' ? token({ revokedAt: NOW }) : token({ id }),
    });
    expect((await errorOf(service.update('0123456789abcdef', { comment: 'x' }))).code).toBe(
      ErrorCode.Conflict,
    );
    const past = await errorOf(
      service.update(
        '1111111111111111',
        updateTokenSchema.parse({ expiresAt: '2020-01-01T00:00:00Z' }),
      ),
    );
    expect(past.code).toBe(ErrorCode.ValidationFailed);
  });
});

describe('TokensService own token ACL', () => {
  it('grants entries to the caller’s own limited token only', async () => {
    const upserts: AclEntryEntity[] = [];
    const tokens = new Map([
      ['0123456789abcdef', token({ limited: true })],
      ['1111111111111111', token({ id: '1111111111111111', name: 'full' })],
      [
        'fedcba9876543210',
        token({ id: 'fedcba9876543210', principal: 'bob@local', limited: true }),
      ],
    ]);
    const { service, invalidations } = setup({
      findToken: async (id) => tokens.get(id) ?? null,
      upsertAcl: async (entry) => (upserts.push(entry), entry),
    });
    const input = ownTokenAclSchema.parse({ path: '/remotes/a', role: 'Audit' });
    const answer = await service.putMineAcl(ALICE, '0123456789abcdef', input);
    expect(answer).toMatchObject({
      path: '/remotes/a',
      principalType: 'token',
      principal: '0123456789abcdef',
      role: 'Audit',
      propagate: true,
    });
    expect(upserts).toHaveLength(1);
    expect(invalidations).toHaveLength(1);
    const unlimited = await errorOf(service.putMineAcl(ALICE, '1111111111111111', input));
    expect(unlimited.code).toBe(ErrorCode.Conflict);
    expect(unlimited.message).toContain('not limited');
    expect((await errorOf(service.putMineAcl(ALICE, 'fedcba9876543210', input))).code).toBe(
      ErrorCode.NotFound,
    );
    expect(upserts).toHaveLength(1);
  });

  it('removes an entry of the own token, and answers 404 when there is none', async () => {
    const { service } = setup({
      findToken: async () => token({ limited: true }),
      deleteAcl: async (path) => path === '/remotes/a',
    });
    await service.deleteMineAcl(ALICE, '0123456789abcdef', '/remotes/a');
    expect(
      (await errorOf(service.deleteMineAcl(ALICE, '0123456789abcdef', '/remotes/b'))).code,
    ).toBe(ErrorCode.NotFound);
  });
});
