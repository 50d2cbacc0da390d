import type { AgentConnection } from '../agents/agent-connection';
import { describe, expect, it } from 'vitest';
import type { ManagerConfig } from '../config/manager-config';
import { AgentError } from '../agents/agent-error';
import { ErrorCode } from '../common/error-code';
import { TaskCancelled } from '../tasks/task-cancelled';
import { MigrationRecoveryService } from './migration-recovery.service';
import {
  migrationRecord,
  progress,
  runnerSetup,
  TASK_ID,
  VM,
  vmOn,
} from '../../test/migration-fixtures';

const NOT_KNOWN = new AgentError(
  ErrorCode.NotFound,
  `no migration ${TASK_ID} on node node-1`,
  'east:9443',
);

function recovery(
  script: Parameters<typeof runnerSetup>[0],
  record = migrationRecord({ sourceNode: 'node-1' }),
  waitSeconds = 120,
) {
  const s = runnerSetup(script, record);
  const config = { migrationRecoveryWaitSeconds: waitSeconds } as ManagerConfig;
  return { ...s, recovery: new MigrationRecoveryService(s.inFlight, config) };
}

const UNREACHABLE = new AgentError(
  ErrorCode.RemoteUnreachable,
  'west:9443 is unreachable: connection refused',
  'west:9443',
);

describe('MigrationRecoveryService: settling a migration left running by a restart', () => {
  it("before the transfer: releases the target's reservation and fails the task, saying the VM is still where it was", async () => {
    const released: string[] = [];
    const s = recovery(
      {
        getVm: async () => vmOn('node-1'),
        cancelMigration: async (_c, ref) => (
          released.push(`${ref.nodeId} ${ref.migrationId} ${ref.vmUuid}`),
          true
        ),
      },
      migrationRecord({ sourceNode: 'node-1', phase: 'prepare' }),
    );
    await expect(s.recovery.resume(s.context)).rejects.toThrow(
      'the manager restarted before the transfer began; the VM is running on node node-1 of remote dc-east',
    );
    expect(released).toEqual([`node-2 ${TASK_ID} ${VM}`]);
    expect(s.phases.map((p) => p.phase)).toEqual(['failed']);
    expect(s.refreshed).toEqual(['dc-east']);
  });

  it('in pre-flight nothing was reserved: the target is not called', async () => {
    const s = recovery(
      { getVm: async () => vmOn('node-1') },
      migrationRecord({ phase: 'preflight' }),
    );
    await expect(s.recovery.resume(s.context)).rejects.toThrow(
      'the manager restarted before the transfer began',
    );
  });

  it('during the transfer: follows a migration the source still runs to its end', async () => {
    const answers = [
      progress('precopy', { totalBytes: '100', remainingBytes: '50' }),
      progress('precopy'),
      progress('completed', { totalTimeMs: 700, downtimeMs: 30 }),
    ];
    const s = recovery(
      { getMigration: async () => answers.shift()!, getVm: async () => vmOn('node-1') },
      migrationRecord({ sourceNode: 'node-1', phase: 'transfer' }),
    );
    await s.recovery.resume(s.context);
    expect(answers).toEqual([]);
    expect(s.log[0]).toBe(
      '[transfer] the manager restarted during the transfer; asking the source how the migration stands',
    );
    expect(s.log.at(-1)).toBe(
      '[completed] the VM runs on node node-2 of remote dc-east (700 ms in all, 30 ms of downtime)',
    );
    expect(s.phases.at(-1)!.phase).toBe('completed');
  });

  it('during the transfer, when the source no longer knows it: succeeded if the VM runs on the target node', async () => {
    const s = recovery(
      { getMigration: async () => Promise.reject(NOT_KNOWN), getVm: async () => vmOn('node-2') },
      migrationRecord({ sourceNode: 'node-1', phase: 'transfer' }),
    );
    await s.recovery.resume(s.context);
    expect(s.log).toContain(
      '[completed] the source could not say how the migration ended; found: the VM is running on node node-2 of remote dc-east',
    );
  });

  it('during the transfer, when the source no longer knows it and the VM is at the source: failed, and the target is released', async () => {
    const released: string[] = [];
    const s = recovery(
      {
        getMigration: async () => Promise.reject(NOT_KNOWN),
        getVm: async () => vmOn('node-1'),
        cancelMigration: async (_c, ref) => (released.push(ref.nodeId), true),
      },
      migrationRecord({ sourceNode: 'node-1', phase: 'transfer' }),
    );
    await expect(s.recovery.resume(s.context)).rejects.toThrow(
      'the outcome could not be learned from the source (the source no longer knows this migration) — checked: the VM is running on node node-1 of remote dc-east',
    );
    expect(released).toEqual(['node-2']);
    expect(s.phases.at(-1)!.phase).toBe('failed');
  });

  it('across remotes, looks for the VM at both and says what each answered', async () => {
    const s = recovery(
      {
        getMigration: async () => Promise.reject(NOT_KNOWN),
        getVm: async (connection: AgentConnection) =>
          connection.remoteId === 'dc-west'
            ? Promise.reject(new AgentError(ErrorCode.NotFound, 'no such VM', 'w'))
            : vmOn('node-1', 'paused'),
        cancelMigration: async () => true,
      },
      migrationRecord({ sourceNode: 'node-1', phase: 'transfer', targetRemote: 'dc-west' }),
    );
    await expect(s.recovery.resume(s.context)).rejects.toThrow(
      'checked: the VM is paused on node node-1 of remote dc-east and not on remote dc-west',
    );
  });

  it('waits for an end that does not answer yet, saying for what in the journal, then follows the transfer to its end', async () => {
    let westDown = 3;
    const s = recovery(
      {
        getVm: async (connection: AgentConnection) => {
          if (connection.remoteId === 'dc-west' && westDown-- > 0) throw UNREACHABLE;
          return vmOn('node-1');
        },
        getMigration: async () => progress('completed', { totalTimeMs: 700, downtimeMs: 30 }),
      },
      migrationRecord({ sourceNode: 'node-1', phase: 'transfer', targetRemote: 'dc-west' }),
    );
    await s.recovery.resume(s.context);
    expect(s.log.slice(0, 3)).toEqual([
      '[transfer] waiting up to 120 s for remote dc-west (west:9443 is unreachable: connection refused) to answer before deciding',
      '[transfer] both ends answer after 6 s; deciding',
      '[transfer] the manager restarted during the transfer; asking the source how the migration stands',
    ]);
    expect(s.phases.at(-1)!.phase).toBe('completed');
  });

  it('decides with what is known once the wait is over, and says which end never answered', async () => {
    const s = recovery(
      {
        getVm: async (connection: AgentConnection) =>
          connection.remoteId === 'dc-west' ? Promise.reject(UNREACHABLE) : vmOn('node-1'),
        cancelMigration: async () => true,
      },
      migrationRecord({ sourceNode: 'node-1', phase: 'prepare', targetRemote: 'dc-west' }),
      10,
    );
    await expect(s.recovery.resume(s.context)).rejects.toThrow(
      'the manager restarted before the transfer began',
    );
    expect(s.log.slice(0, 2)).toEqual([
      '[prepare] waiting up to 10 s for remote dc-west (west:9443 is unreachable: connection refused) to answer before deciding',
      '[prepare] remote dc-west (west:9443 is unreachable: connection refused) still does not answer after 10 s; deciding with what is known',
    ]);
  });

  it('with the outcome recorded before the restart, ends the task with it', async () => {
    const s = recovery(
      { getVm: async () => vmOn('node-1') },
      migrationRecord({ sourceNode: 'node-1', phase: 'cancelled' }),
    );
    await expect(s.recovery.resume(s.context)).rejects.toBeInstanceOf(TaskCancelled);
  });
});
