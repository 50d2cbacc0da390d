import type { CaRotationStatus__Output, ListNodesResponse__Output } from '@debvisor/proto';
import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import { testCaller } from '../../test/test-caller';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { AgentError } from '../agents/agent-error';
import type { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { ErrorCode } from '../common/error-code';
import type { RemotesService } from '../remotes/remotes.service';
import type { TaskEntity } from '../tasks/task.entity';
import type {
  EnqueueOptions,
  TaskContext,
  TaskHandler,
  TasksService,
} from '../tasks/tasks.service';
import { ClusterCaService } from './cluster-ca.service';

const CONNECTION: AgentConnection = {
  remoteId: 'dc-east',
  endpoints: ['plain-node:9443', 'issuer-node:9443'],
  caCertPem: 'OLD',
  apiKey: 'k',
};
const CALLER = testCaller([{ path: '/', role: 'Admin' }], { display: 'root@local!bootstrap' });

const ca = (fingerprint: string) => ({
  fingerprintSha256: fingerprint,
  subject: 'CN=x',
  pem: fingerprint,
});
const node = (nodeId: string, issuer: string) => ({
  nodeId,
  issuerFingerprintSha256: issuer,
  notBefore: '',
  notAfter: '',
});
const status = (
  cas: string[],
  nodes: ReturnType<typeof node>[],
  issuing = '',
): CaRotationStatus__Output => ({
  rotating: cas.length > 1,
  cas: cas.map(ca),
  issuingFingerprintSha256: issuing,
  nodes,
  nodeId: 'x',
});
const REGISTRY = {
  clusterId: 'dc-east',
  nodes: [
    { alive: true, info: { nodeId: 'n1' } },
    { alive: true, info: { nodeId: 'n2' } },
    { alive: false, info: { nodeId: 'gone' } },
  ],
} as unknown as ListNodesResponse__Output;

function setUp(agents: Partial<Record<keyof AgentClientRepository, unknown>>) {
  const handlers = new Map<string, TaskHandler>();
  const trusted: string[] = [];
  const notes: unknown[] = [];
  let prepare: EnqueueOptions['prepare'];
  const service = new ClusterCaService(
    strictMock<TasksService>('TasksService', {
      registerHandler: (type: string, handler: TaskHandler) => void handlers.set(type, handler),
      enqueue: async (_task, options) => {
        prepare = options?.prepare;
        await prepare?.('task-1');
        return { taskId: 'task-1' };
      },
    }),
    strictMock<RemotesService>('RemotesService', {
      connectionFor: async () => CONNECTION,
      replaceClusterCas: async (_id: string, pem: string) => (trusted.push(pem), {}) as never,
    }),
    strictMock<AgentClientRepository>('AgentClientRepository', agents as never),
    strictMock<AuditService>('AuditService', {
      note: (details) => void notes.push(details),
      runAs: (_principal, work) => work(),
    }),
    new AccessPolicy(),
  );
  service.onModuleInit();
  const log: string[] = [];
  const progress: number[] = [];
  const context: TaskContext = {
    task: { id: 'task-1', remoteId: 'dc-east', owner: 'root@local!bootstrap' } as TaskEntity,
    log: async (message) => void log.push(message),
    progress: async (fraction) => void progress.push(fraction),
  };
  const run = () => handlers.get('remote.ca-rotation')!.run(context);
  return { service, trusted, notes, log, progress, run };
}

describe('ClusterCaService', () => {
  it('rotates: begins on the endpoint that holds the CA key, trusts both CAs, waits for the live nodes, finishes and trusts the new CA alone', async () => {
    const begun: string[] = [];
    let polls = 0;
    const { service, trusted, notes, log, progress, run } = setUp({
      getCaRotation: async () => {
        if (begun.length === 0) return status(['OLD'], [node('n1', 'OLD'), node('n2', 'OLD')]);
        polls++;
        // n1 renews at the second look; the node that is gone never does.
        return status(
          ['OLD', 'NEW'],
          [node('n1', polls > 1 ? 'NEW' : 'OLD'), node('n2', 'NEW'), node('gone', 'OLD')],
        );
      },
      listNodes: async () => REGISTRY,
      beginCaRotation: async (connection: AgentConnection) => {
        begun.push(connection.endpoints[0]);
        if (connection.endpoints[0] === 'plain-node:9443')
          throw new AgentError(
            ErrorCode.Conflict,
            'this node holds no cluster CA key (tls.issuer); ask a node that does',
            'plain-node:9443',
          );
        return status(['OLD', 'NEW'], [], 'NEW');
      },
      finishCaRotation: async (connection: AgentConnection, force: boolean) => {
        expect(connection.endpoints).toEqual(['plain-node:9443']);
        expect(force).toBe(false);
        return status(['NEW'], [], 'NEW');
      },
    });
    await expect(
      service.request(CALLER, 'dc-east', { action: 'rotate', force: false }),
    ).resolves.toEqual({ taskId: 'task-1' });
    expect(notes).toEqual([{ taskId: 'task-1', action: 'rotate', force: false }]);
    await run();
    expect(begun).toEqual(['plain-node:9443', 'issuer-node:9443']);
    expect(trusted).toEqual(['OLDNEW', 'NEW']);
    expect(log).toContain('1 of 2 live nodes renewed with the new CA');
    expect(log).toContain('2 of 2 live nodes renewed with the new CA');
    expect(progress.at(-1)).toBe(1);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
  });

  it('refuses a caller without remote.trust granted directly, before any task', async () => {
    const { service } = setUp({});
    const operator = testCaller([{ path: '/', role: 'Manage' }]);
    await expect(
      service.request(operator, 'dc-east', { action: 'rotate', force: false }),
    ).rejects.toThrow("rotating a remote's CA needs remote.trust on /remotes/dc-east");
  });

  it('begins only: trusts both CAs and stops there', async () => {
    const { service, trusted, run } = setUp({
      getCaRotation: async () => status(['OLD'], []),
      beginCaRotation: async () => status(['OLD', 'NEW'], [], 'NEW'),
    });
    await service.request(CALLER, 'dc-east', { action: 'begin', force: false });
    await run();
    expect(trusted).toEqual(['OLDNEW']);
  });

  it('refuses to finish when no rotation is under way, and stops at an error that is not "no CA key"', async () => {
    const idle = setUp({ getCaRotation: async () => status(['OLD'], []) });
    await idle.service.request(CALLER, 'dc-east', { action: 'finish', force: false });
    await expect(idle.run()).rejects.toThrow('no CA rotation of remote dc-east is under way');

    const refused = setUp({
      getCaRotation: async () => status(['OLD'], []),
      beginCaRotation: async () => {
        throw new AgentError(ErrorCode.Conflict, 'a CA rotation is under way already', 'x');
      },
    });
    await refused.service.request(CALLER, 'dc-east', { action: 'begin', force: false });
    await expect(refused.run()).rejects.toThrow('a CA rotation is under way already');
    expect(refused.trusted).toEqual([]);
  });

  it('finishes at once when forced, whatever the nodes hold', async () => {
    const { service, trusted, run } = setUp({
      getCaRotation: async () => status(['OLD', 'NEW'], [node('n1', 'OLD')]),
      finishCaRotation: async (_c: AgentConnection, force: boolean) => {
        expect(force).toBe(true);
        return status(['NEW'], [], 'NEW');
      },
    });
    await service.request(CALLER, 'dc-east', { action: 'finish', force: true });
    await run();
    expect(trusted).toEqual(['NEW']);
  });
});
