import { describe, expect, it } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import type { OperatorConsoleRepository } from '../common/operator-console.repository';
import type { RandomRepository } from '../common/random.repository';
import type { ApiTokenEntity } from './api-token.entity';
import { hashTokenSecret } from './api-token';
import { AuthService } from './auth.service';
import type { Caller } from './caller';
import type { TokensRepository } from './tokens.repository';

const NOW = new Date('2026-05-01T12:00:00Z');
const SECRET = 'S'.repeat(43);
const TOKEN = `dvdm_00112233aabbccdd_${SECRET}`;

function storedToken(overrides: Partial<ApiTokenEntity> = {}): ApiTokenEntity {
  return {
    id: '00112233aabbccdd',
    principal: 'root@local',
    name: 'bootstrap',
    secretHash: hashTokenSecret(SECRET),
    createdAt: new Date('2026-01-01T00:00:00Z'),
    lastUsedAt: new Date(NOW.getTime() - 5_000),
    expiresAt: null,
    revokedAt: null,
    ...overrides,
  };
}

function service(tokens: Partial<TokensRepository>, extra: { random?: Partial<RandomRepository>; console?: Partial<OperatorConsoleRepository> } = {}) {
  return new AuthService(
    strictMock<TokensRepository>('TokensRepository', tokens),
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
    strictMock<RandomRepository>('RandomRepository', extra.random ?? {}),
    strictMock<OperatorConsoleRepository>('OperatorConsoleRepository', extra.console ?? {}),
  );
}

function caller(acl: Caller['acl']): Caller {
  return { principal: 'alice@ldap', tokenId: 'x', tokenName: 't', display: 'alice@ldap!t', acl };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return error.code;
    throw error;
  }
  return 'no error';
}

describe('AuthService.authenticate', () => {
  it('accepts a valid token and answers its principal and ACL', async () => {
    const auth = service({
      findToken: async () => storedToken(),
      aclEntriesOf: async () => [{ id: 'a', path: '/', principal: 'root@local', role: 'Admin', createdAt: NOW }],
    });
    await expect(auth.authenticate(`Bearer ${TOKEN}`)).resolves.toEqual({
      principal: 'root@local',
      tokenId: '00112233aabbccdd',
      tokenName: 'bootstrap',
      display: 'root@local!bootstrap',
      acl: [{ path: '/', role: 'Admin' }],
    });
  });

  it('records the last use at most once a minute', async () => {
    const touched: Date[] = [];
    const auth = service({
      findToken: async () => storedToken({ lastUsedAt: new Date(NOW.getTime() - 61_000) }),
      touchToken: async (_id: string, at: Date) => void touched.push(at),
      aclEntriesOf: async () => [],
    });
    await auth.authenticate(`Bearer ${TOKEN}`);
    expect(touched).toEqual([NOW]);
  });

  it.each([
    ['no header', undefined],
    ['another scheme', `Basic ${TOKEN}`],
    ['a malformed token', 'Bearer dvdm_short'],
    ['an agent key', `Bearer dvk_00112233aabbccdd_${SECRET}`],
  ])('refuses %s with 401 without looking anything up', async (_, header) => {
    expect(await codeOf(service({}).authenticate(header))).toBe('unauthenticated');
  });

  it.each([
    ['an unknown id', null],
    ['a wrong secret', storedToken({ secretHash: hashTokenSecret('T'.repeat(43)) })],
    ['a revoked token', storedToken({ revokedAt: new Date('2026-04-01T00:00:00Z') })],
    ['an expired token', storedToken({ expiresAt: NOW })],
  ])('refuses %s with 401', async (_, stored) => {
    expect(await codeOf(service({ findToken: async () => stored }).authenticate(`Bearer ${TOKEN}`))).toBe('unauthenticated');
  });
});

describe('AuthService.authorize', () => {
  const auth = service({});

  it('grants through a role on the path or an ancestor, filling the path from the route parameters', () => {
    const operator = caller([{ path: '/remotes/dc-east', role: 'Manage' }]);
    expect(() => auth.authorize(operator, { privilege: 'vm.power', path: '/remotes/{remote}/vms/{vmid}', partial: false }, { remote: 'dc-east', vmid: 'v1' })).not.toThrow();
    expect(() => auth.authorize(operator, { privilege: 'vm.power', path: '/remotes/{remote}/vms/{vmid}', partial: false }, { remote: 'dc-west', vmid: 'v1' })).toThrow(
      /needs vm.power on \/remotes\/dc-west\/vms\/v1/,
    );
  });

  it('never lets a read-only role change anything', () => {
    const auditor = caller([{ path: '/', role: 'Audit' }]);
    expect(() => auth.authorize(auditor, { privilege: 'remote.audit', path: '/remotes/{remote}', partial: false }, { remote: 'a' })).not.toThrow();
    for (const privilege of ['remote.modify', 'vm.power', 'task.cancel'] as const) {
      expect(() => auth.authorize(auditor, { privilege, path: '/', partial: false }, {})).toThrow(DomainError);
    }
  });

  it('lets a collection route through for a grant below its path (partial), but not for none', () => {
    const scoped = caller([{ path: '/remotes/dc-east', role: 'Audit' }]);
    expect(() => auth.authorize(scoped, { privilege: 'remote.audit', path: '/remotes', partial: true }, {})).not.toThrow();
    expect(() => auth.authorize(caller([]), { privilege: 'remote.audit', path: '/remotes', partial: true }, {})).toThrow(DomainError);
  });

  it('answers the visible subset of remotes in one pass', () => {
    const scoped = caller([{ path: '/remotes/b', role: 'Audit' }]);
    expect(auth.allowedRemotes(scoped, 'remote.audit', ['a', 'b', 'c'])).toEqual(new Set(['b']));
    expect(auth.remoteScope(scoped, 'task.audit')).toEqual(new Set(['b']));
    expect(auth.remoteScope(caller([{ path: '/', role: 'Audit' }]), 'task.audit')).toBe('all');
  });
});

describe('AuthService.bootstrap', () => {
  it('creates an Admin token on / and prints it once in a banner', async () => {
    const printed: string[] = [];
    let saved: [ApiTokenEntity, unknown] | undefined;
    const auth = service(
      {
        isBootstrapped: async () => false,
        saveBootstrap: async (token: ApiTokenEntity, acl) => {
          saved = [token, acl];
          return true;
        },
      },
      {
        random: {
          bytes: (n: number) => Buffer.alloc(n, 7),
          uuid: () => '00000000-0000-4000-8000-000000000001',
        },
        console: { print: (text: string) => void printed.push(text) },
      },
    );
    await auth.bootstrap();
    const token = `dvdm_0707070707070707_${Buffer.alloc(32, 7).toString('base64url')}`;
    expect(printed).toHaveLength(1);
    expect(printed[0]).toContain(`bootstrap admin token: ${token}`);
    expect(saved![0]).toMatchObject({ id: '0707070707070707', principal: 'root@local', secretHash: hashTokenSecret(Buffer.alloc(32, 7).toString('base64url')) });
    expect(JSON.stringify(saved)).not.toContain(Buffer.alloc(32, 7).toString('base64url'));
    expect(saved![1]).toMatchObject({ path: '/', principal: 'root@local', role: 'Admin' });
  });

  it('does nothing once bootstrapped', async () => {
    await service({ isBootstrapped: async () => true }).bootstrap();
  });

  it('prints nothing when another instance bootstrapped first', async () => {
    const auth = service(
      { isBootstrapped: async () => false, saveBootstrap: async () => false },
      { random: { bytes: (n: number) => Buffer.alloc(n, 1), uuid: () => 'u' } },
    );
    await auth.bootstrap();
  });
});
