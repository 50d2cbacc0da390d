import { AccessPolicy } from '../authz/access-policy.service';
import { testCaller } from '../../test/test-caller';
import type { Vm__Output } from '@debvisor/proto';
import { describe, expect, it } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection, VmAction } from '../agents/agent-connection';
import { AgentError } from '../agents/agent-error';
import type { AuditService } from '../audit/audit.service';
import type { Caller } from '../authz/caller';
import { ErrorCode } from '../common/error-code';
import type { RemotesService } from '../remotes/remotes.service';
import type { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import type { TaskContext, TaskHandler, TasksService } from '../tasks/tasks.service';
import { VmPowerService } from './vm-power.service';

const CONNECTION: AgentConnection = {
  remoteId: 'dc-east',
  endpoints: ['a:1'],
  caCertPem: 'ca',
  apiKey: 'k',
};
const UUID = '11111111-1111-4111-8111-111111111111';
const CALLER: Caller = testCaller([{ path: '/', role: 'Manage' }], {
  tokenName: 'bootstrap',
  display: 'root@local!bootstrap',
});

function setup(
  vmAction: (connection: AgentConnection, action: VmAction, uuid: string) => Promise<Vm__Output>,
) {
  const handlers = new Map<string, TaskHandler>();
  const refreshed: string[] = [];
  const enqueued: unknown[] = [];
  const notes: unknown[] = [];
  const actingFor: string[] = [];
  const power = new VmPowerService(
    strictMock<TasksService>('TasksService', {
      registerHandler: (type: string, handler: TaskHandler) => void handlers.set(type, handler),
      enqueue: async (task) => (enqueued.push(task), { taskId: 'task-1' }),
    }),
    strictMock<RemotesService>('RemotesService', {
      get: async () => ({}) as never,
      connectionFor: async () => CONNECTION,
    }),
    strictMock<AgentClientRepository>('AgentClientRepository', { vmAction }),
    strictMock<ResourcesService>('ResourcesService', {
      cachedVm: () => ({ name: 'web-1' }) as never,
      refreshVm: async (remote: string, uuid: string) => void refreshed.push(`${remote}/${uuid}`),
      refreshRemote: async (remote: string) => void refreshed.push(remote),
    }),
    strictMock<AuditService>('AuditService', {
      note: (details) => void notes.push(details),
      runAs: (principal, work) => (actingFor.push(principal), work()),
    }),
    new AccessPolicy(),
  );
  power.onModuleInit();
  return { power, handlers, refreshed, enqueued, notes, actingFor };
}

function context(type: string, log: string[]): TaskContext {
  const task = {
    id: 'task-1',
    type,
    remoteId: 'dc-east',
    vmId: UUID,
    owner: 'root@local!bootstrap',
  } as TaskEntity;
  return { task, log: async (message) => void log.push(message), progress: async () => undefined };
}

describe('VmPowerService', () => {
  it('queues a task per action, owned by the caller', async () => {
    const { power, handlers, enqueued, notes } = setup(async () => ({}) as Vm__Output);
    expect([...handlers.keys()]).toEqual(['vm.start', 'vm.shutdown', 'vm.reboot', 'vm.stop']);
    await expect(power.request(CALLER, 'dc-east', UUID, 'reboot')).resolves.toEqual({
      taskId: 'task-1',
    });
    expect(enqueued).toEqual([
      {
        type: 'vm.reboot',
        remoteId: 'dc-east',
        vmId: UUID,
        owner: 'root@local!bootstrap',
        credentialId: null,
      },
    ]);
    expect(notes).toEqual([{ taskId: 'task-1' }]);
  });

  it('carries the action out through the agent, logs the new state and re-reads the VM', async () => {
    const calls: string[] = [];
    const { handlers, refreshed, actingFor } = setup(async (_c, action, uuid) => {
      calls.push(`${action} ${uuid}`);
      return { spec: null, runtime: { state: 'running', nodeId: 'node-2' } } as Vm__Output;
    });
    const log: string[] = [];
    await handlers.get('vm.start')!.run(context('vm.start', log));
    expect(calls).toEqual([`start ${UUID}`]);
    expect(actingFor).toEqual(['root@local']);
    expect(log).toEqual([
      `asking remote dc-east to start VM web-1 (${UUID})`,
      'VM started: now running on node node-2',
    ]);
    expect(refreshed).toEqual([`dc-east/${UUID}`]);
  });

  it('re-reads the VM even when the action failed, and lets the error fail the task', async () => {
    const { handlers, refreshed } = setup(async () => {
      throw new AgentError(ErrorCode.Conflict, 'VM web-1 is busy', 'a:1');
    });
    await expect(handlers.get('vm.stop')!.run(context('vm.stop', []))).rejects.toThrow(
      'VM web-1 is busy',
    );
    expect(refreshed).toEqual([`dc-east/${UUID}`]);
  });

  it('refreshes the remote of a task interrupted by a restart', () => {
    const { handlers, refreshed } = setup(async () => ({}) as Vm__Output);
    handlers.get('vm.shutdown')!.afterInterrupted!({ remoteId: 'dc-east' } as TaskEntity);
    expect(refreshed).toEqual(['dc-east']);
  });
});
