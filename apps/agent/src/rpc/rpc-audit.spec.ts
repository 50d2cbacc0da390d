import type { AuditEventInput } from '@debvisor/audit';
import { strictMock } from '@debvisor/testing/strict-mock';
import { Metadata, status, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { describe, expect, it, vi } from 'vitest';
import { systemClock } from '../shared/clock';
import { createLogger } from '../shared/logger';
import { vmRefSchema } from '../vms/vm.requests';
import type { Authenticator } from './authenticator.service';
import { RpcAudit, rpcTarget, type AuditSink } from './rpc-audit';
import { RpcRouter } from './rpc-router';

const UUID = '11111111-1111-4111-8111-111111111111';
const KEY = `dvk_0011223344556677_${'s'.repeat(43)}`;

function router(sink: AuditSink) {
  const authenticator = strictMock<Authenticator>('Authenticator', {
    authenticate: async () => ({
      principal: 'manager',
      permissions: ['*'],
      keyId: '0011223344556677',
    }),
  });
  return new RpcRouter(
    authenticator,
    createLogger('silent'),
    undefined,
    new RpcAudit(sink, systemClock, createLogger('silent')),
  );
}

/** Calls a unary handler as grpc-js would; answers the error or the response. */
function invoke(
  handler: ReturnType<RpcRouter['unary']>,
  request: unknown,
): Promise<{ error: ServiceError | null; value: unknown }> {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${KEY}`);
  const call = {
    request,
    metadata,
    getDeadline: () => Infinity,
    getAuthContext: () => ({}),
    getPeer: () => '127.0.0.1:40000',
  } as unknown as ServerUnaryCall<unknown, unknown>;
  return new Promise((resolve) =>
    handler(call, (error, value) => resolve({ error: error as ServiceError | null, value })),
  );
}

describe('RpcRouter with an audit file', () => {
  it('records a change before and after it, with the caller and the target but never the key', async () => {
    const written: AuditEventInput[] = [];
    const handle = vi.fn(async () => ({ ok: true }));
    const answer = await invoke(
      router({ append: async (e) => void written.push(e) }).unary(
        'VmService.StopVm',
        vmRefSchema,
        handle,
      ),
      { uuid: UUID },
    );
    expect(answer.error).toBeNull();
    expect(written.map((e) => [e.action, e.outcome, e.principal, e.target, e.source])).toEqual([
      ['rpc.VmService.StopVm', 'attempt', 'manager', `/vms/${UUID}`, '127.0.0.1:40000'],
      ['rpc.VmService.StopVm', 'success', 'manager', `/vms/${UUID}`, '127.0.0.1:40000'],
    ]);
    expect(written[0].details).toMatchObject({ keyId: '0011223344556677' });
    expect(JSON.stringify(written)).not.toContain('s'.repeat(43));
  });

  it("writes a change's attempt without its own fdatasync and has its outcome synced before the answer", async () => {
    const appended: string[] = [];
    let answered = false;
    const answer = await invoke(
      router({
        append: async (e, options) => {
          await Promise.resolve();
          appended.push(`${e.outcome} sync=${options?.sync ?? true} answered=${answered}`);
        },
      }).unary('VmService.StopVm', vmRefSchema, async () => ({ ok: true })),
      { uuid: UUID },
    );
    answered = true;
    expect(answer.error).toBeNull();
    expect(appended).toEqual([
      'attempt sync=false answered=false',
      'success sync=true answered=false',
    ]);
  });

  it('refuses a change with UNAVAILABLE, without carrying it out, when the attempt cannot be written', async () => {
    const handle = vi.fn(async () => ({ ok: true }));
    const failing: AuditSink = {
      append: async () => Promise.reject(new Error('ENOSPC: no space left on device')),
    };
    const answer = await invoke(router(failing).unary('VmService.StopVm', vmRefSchema, handle), {
      uuid: UUID,
    });
    expect(answer.error).toMatchObject({
      code: status.UNAVAILABLE,
      details: expect.stringContaining('cannot write its audit log'),
    });
    expect(answer.error!.details).not.toContain('ENOSPC');
    expect(handle).not.toHaveBeenCalled();
  });

  it('still answers reads when the audit file cannot be written', async () => {
    const handle = vi.fn(async () => ({ ok: true }));
    const failing: AuditSink = { append: async () => Promise.reject(new Error('EIO')) };
    const answer = await invoke(router(failing).unary('VmService.GetVm', vmRefSchema, handle), {
      uuid: UUID,
    });
    expect(answer).toEqual({ error: null, value: { ok: true } });
  });

  it('names the target of a request from the fields that name it, never from others', () => {
    expect(rpcTarget({ uuid: UUID, cookie: 'secret' })).toBe(`/vms/${UUID}`);
    expect(rpcTarget({ pool: 'rbd', image: 'web-01-disk0', snapshot: 's1' })).toBe(
      '/rbd/rbd/web-01-disk0',
    );
    expect(rpcTarget({ image: { pool: 'rbd', image: 'a' } })).toBe('/rbd/rbd/a');
    expect(rpcTarget({ vmUuid: UUID, snapshot: 'before-upgrade' })).toBe(`/vms/${UUID}`);
    expect(rpcTarget({ node: { nodeId: 'east-1' } })).toBe('/nodes/east-1');
    expect(rpcTarget({ nodeId: '' })).toBeNull();
    expect(rpcTarget({ cookie: 'secret' })).toBeNull();
  });
});
