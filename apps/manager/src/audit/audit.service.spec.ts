import type { AuditEntry, AuditEvent } from '@debvisor/audit';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it } from 'vitest';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { currentAuditScope } from './audit-call-context';
import type { AuditQueryRepository } from './audit-query.repository';
import type { AuditWriter } from './audit-writer';
import { AuditService, SYSTEM_PRINCIPAL, type AuditedCall } from './audit.service';
import type { RequestOrigin } from './request-origin';

const ORIGIN: RequestOrigin = {
  traceId: 'trace-1',
  source: '10.0.0.9',
  method: 'POST',
  path: '/api/v1/remotes',
};
const CALL: AuditedCall = {
  action: 'remote.create',
  principal: 'alice@ldap',
  tokenId: '00112233aabbccdd',
  target: '/remotes/dc-east',
  origin: ORIGIN,
};
const KEY = `dvk_0123456789abcdef_${'K'.repeat(43)}`;

function setup(options: { failing?: boolean } = {}) {
  const written: AuditEvent[] = [];
  const errors: unknown[] = [];
  let now = new Date('2026-05-01T12:00:00.000Z').getTime();
  const service = new AuditService(
    strictMock<AuditWriter>('AuditWriter', {
      write: async (event: AuditEvent) => {
        if (options.failing) throw new Error('permission denied for table audit_log');
        written.push(event);
        return {
          ...event,
          seq: written.length,
          prevHash: '0'.repeat(64),
          hash: '1'.repeat(64),
        } as AuditEntry;
      },
    }),
    strictMock<AuditQueryRepository>('AuditQueryRepository'),
    strictMock<ClockRepository>('ClockRepository', { now: () => new Date(now) }),
    strictMock<PinoLogger>('PinoLogger', {
      setContext: () => undefined,
      error: (...args: unknown[]) => void errors.push(args),
    }),
  );
  return { service, written, errors, advance: (ms: number) => (now += ms) };
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return error instanceof DomainError ? error.code : String(error);
  }
}

describe('AuditService', () => {
  it('refuses a change with 503 audit_unavailable when its attempt cannot be written, and logs why', async () => {
    const { service, errors } = setup({ failing: true });
    expect(await codeOf(service.attempt(CALL))).toBe(ErrorCode.AuditUnavailable);
    expect(errors).toHaveLength(1);
  });

  it('never fails an answer for an entry written after the fact', async () => {
    const { service, errors } = setup({ failing: true });
    await service.outcome(CALL, {});
    await service.authentication({ outcome: 'failure', method: 'api_token' }, ORIGIN);
    await service.denied(
      { principal: 'bob@local' },
      { privilege: 'remote.modify', path: '/remotes/{remote}' },
      { remote: 'x' },
      ORIGIN,
    );
    await service.rateLimited({ limit: 'login attempts per minute' }, ORIGIN);
    await service.taskFinished({
      id: 't',
      type: 'vm.start',
      owner: 'a!b',
      remoteId: 'r',
      vmId: null,
      state: 'succeeded',
      error: null,
    });
    expect(errors).toHaveLength(5);
  });

  it('records the attempt and the outcome with what services noted, redacting any secret noted by mistake', async () => {
    const { service, written } = setup();
    await service.attempt(CALL);
    const notes = service.runCall(CALL, () => {
      service.note({ endpoints: ['a:1'], key: KEY });
      service.note({ note: `made with ${KEY}` });
      return currentAuditScope()!.notes;
    });
    service.note({ outside: 'any call: ignored' });
    await service.outcome(
      CALL,
      notes,
      new DomainError(ErrorCode.Conflict, 'remote dc-east already exists'),
    );
    expect(
      written.map((e) => [e.action, e.outcome, e.principal, e.target, e.traceId, e.source]),
    ).toEqual([
      ['remote.create', 'attempt', 'alice@ldap', '/remotes/dc-east', 'trace-1', '10.0.0.9'],
      ['remote.create', 'failure', 'alice@ldap', '/remotes/dc-east', 'trace-1', '10.0.0.9'],
    ]);
    expect(written[1].details).toMatchObject({
      endpoints: ['a:1'],
      key: '[redacted]',
      code: 'conflict',
      status: 409,
      tokenId: '00112233aabbccdd',
    });
    expect(written[1].details.note).toBe('made with dvk_0123456789abcdef_[redacted]');
    expect(written[1].details).not.toHaveProperty('outside');
    expect(JSON.stringify(written)).not.toContain('K'.repeat(43));
  });

  it('records every failed authentication, and a success once a minute per token and address', async () => {
    const { service, written, advance } = setup();
    const success = {
      outcome: 'success' as const,
      method: 'api_token',
      principal: 'root@local',
      tokenId: 'aa',
    };
    await service.authentication(success, ORIGIN);
    await service.authentication(success, ORIGIN);
    await service.authentication(success, { ...ORIGIN, source: '192.0.2.1' });
    await service.authentication(
      { outcome: 'failure', method: 'api_token', tokenId: 'aa', reason: 'expired' },
      ORIGIN,
    );
    await service.authentication(
      { outcome: 'failure', method: 'api_token', tokenId: 'aa', reason: 'expired' },
      ORIGIN,
    );
    advance(60_000);
    await service.authentication(success, ORIGIN);
    expect(written.map((e) => [e.outcome, e.source])).toEqual([
      ['success', '10.0.0.9'],
      ['success', '192.0.2.1'],
      ['failure', '10.0.0.9'],
      ['failure', '10.0.0.9'],
      ['success', '10.0.0.9'],
    ]);
    expect(written[2]).toMatchObject({
      action: 'auth.login',
      principal: null,
      details: { method: 'api_token', tokenId: 'aa', reason: 'expired' },
    });
  });

  it('records rate-limit hits as denied', async () => {
    const { service, written } = setup();
    await service.rateLimited(
      {
        principal: null,
        limit: 'login attempts per minute',
        scope: 'realm:ldap',
        retryAfterSeconds: 30,
      },
      ORIGIN,
    );
    expect(written[0]).toMatchObject({
      action: 'ratelimit.hit',
      outcome: 'denied',
      source: '10.0.0.9',
      details: { limit: 'login attempts per minute', retryAfterSeconds: 30 },
    });
  });

  it('records an agent call that changes something before it is made, as the principal it is made for, and refuses it when that fails', async () => {
    const { service, written } = setup();
    const call = {
      remote: 'dc-east',
      rpc: 'VmService.StartVm',
      vm: 'v-1',
      keyId: '0123456789abcdef',
    };
    const record = await service.runAs('alice@ldap', () => service.agentCallStarting(call));
    await service.agentCallFinished(record);
    const read = await service.runAs('bob@local', () =>
      service.agentCallStarting({ remote: 'dc-east', rpc: 'VmService.ListVms' }),
    );
    await service.agentCallFinished(
      read,
      new DomainError(ErrorCode.RemoteUnreachable, 'a:1 is unreachable'),
    );
    expect(written.map((e) => [e.action, e.outcome, e.principal, e.target])).toEqual([
      ['agent.call', 'attempt', 'alice@ldap', '/remotes/dc-east/vms/v-1'],
      ['agent.call', 'success', 'alice@ldap', '/remotes/dc-east/vms/v-1'],
      ['agent.call', 'failure', 'bob@local', '/remotes/dc-east'],
    ]);
    expect(written[2].details).toMatchObject({
      rpc: 'VmService.ListVms',
      code: 'remote_unreachable',
      ms: expect.any(Number),
    });

    const failing = setup({ failing: true }).service;
    expect(await codeOf(failing.agentCallStarting(call))).toBe(ErrorCode.AuditUnavailable);
    await expect(
      failing.agentCallStarting({ remote: 'dc-east', rpc: 'NodeService.ListNodes' }),
    ).resolves.toBeDefined();
  });

  it("sums the manager's own reads up per remote, one entry per interval (and at shutdown), while its changes and others' reads stay one entry each", async () => {
    const { service, written, advance } = setup();
    const poll = async (remote: string, error?: unknown) => {
      for (const rpc of ['NodeService.ListNodes', 'VmService.ListVms'])
        await service.agentCallFinished(await service.agentCallStarting({ remote, rpc }), error);
    };
    for (let minute = 0; minute < 10; minute++) {
      await poll('dc-east');
      await poll(
        'dc-west',
        minute === 4
          ? new DomainError(ErrorCode.RemoteUnreachable, 'w:1 is unreachable')
          : undefined,
      );
      advance(60_000);
    }
    // A change the manager makes on its own is still recorded before it is made.
    await service.agentCallFinished(
      await service.agentCallStarting({
        remote: 'dc-east',
        rpc: 'StorageService.CreateMirrorSnapshot',
      }),
    );
    expect(written.map((e) => [e.action, e.outcome])).toEqual([
      ['agent.call', 'attempt'],
      ['agent.call', 'success'],
    ]);
    await poll('dc-east');
    // Every remote whose interval is over is summed up then: dc-west too.
    expect(written.slice(2).map((e) => [e.action, e.outcome, e.principal, e.target])).toEqual([
      ['agent.call.summary', 'success', SYSTEM_PRINCIPAL, '/remotes/dc-east'],
      ['agent.call.summary', 'failure', SYSTEM_PRINCIPAL, '/remotes/dc-west'],
    ]);
    expect(written[2].details).toEqual({
      remote: 'dc-east',
      from: '2026-05-01T12:00:00.000Z',
      to: '2026-05-01T12:10:00.000Z',
      // The interval ended after ListNodes at 12:10: the ListVms that followed opened the next one.
      calls: {
        'NodeService.ListNodes': { success: 11, failure: 0 },
        'VmService.ListVms': { success: 10, failure: 0 },
      },
    });
    expect(written[3].details).toEqual({
      remote: 'dc-west',
      from: '2026-05-01T12:00:00.000Z',
      to: '2026-05-01T12:09:00.000Z',
      calls: {
        'NodeService.ListNodes': { success: 9, failure: 1 },
        'VmService.ListVms': { success: 9, failure: 1 },
      },
      lastError: {
        rpc: 'VmService.ListVms',
        at: '2026-05-01T12:04:00.000Z',
        code: 'remote_unreachable',
        status: 422,
        error: 'w:1 is unreachable',
      },
    });
    await poll('dc-west');
    await poll('dc-east');
    expect(written).toHaveLength(4);
    await service.onModuleDestroy();
    expect(written.slice(4).map((e) => [e.action, e.target, e.details.calls])).toEqual([
      [
        'agent.call.summary',
        '/remotes/dc-east',
        {
          'VmService.ListVms': { success: 2, failure: 0 },
          'NodeService.ListNodes': { success: 1, failure: 0 },
        },
      ],
      [
        'agent.call.summary',
        '/remotes/dc-west',
        {
          'NodeService.ListNodes': { success: 1, failure: 0 },
          'VmService.ListVms': { success: 1, failure: 0 },
        },
      ],
    ]);
  });

  it("records a task's end as its owner's", async () => {
    const { service, written } = setup();
    await service.taskFinished({
      id: 't-1',
      type: 'vm.stop',
      owner: 'alice@ldap!ci',
      remoteId: 'dc-east',
      vmId: 'v-1',
      state: 'failed',
      error: 'VM is busy',
    });
    expect(written[0]).toMatchObject({
      action: 'task.finish',
      principal: 'alice@ldap',
      outcome: 'failure',
      target: '/remotes/dc-east/vms/v-1',
      details: { taskId: 't-1', type: 'vm.stop', owner: 'alice@ldap!ci', error: 'VM is busy' },
    });
  });
});
