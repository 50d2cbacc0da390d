import type { MirrorStatus__Output } from '@debvisor/proto';
import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { AgentError } from '../agents/agent-error';
import type { ClockRepository } from '../common/clock.repository';
import { ErrorCode } from '../common/error-code';
import type { RemotesService } from '../remotes/remotes.service';
import { ReplicationStatusService } from './replication-status.service';
import type { VmReplicationEntity } from './vm-replication.entity';

const NOW = new Date('2026-01-01T01:00:00Z');

const RECORD = {
  vmId: 'vm',
  sourceRemote: 'dc-a',
  sourcePool: 'rbd',
  targetRemote: 'dc-b',
  targetPool: 'rbd-b',
  sourceState: 'primary',
  targetState: 'secondary',
  disks: [
    { pool: 'rbd', image: 'd0' },
    { pool: 'rbd', image: 'd1' },
  ],
  createdAt: new Date('2026-01-01T00:00:00Z'),
} as VmReplicationEntity;

function status(fields: Partial<MirrorStatus__Output>): MirrorStatus__Output {
  return {
    pool: '',
    image: '',
    enabled: true,
    primary: false,
    state: 'up+replaying',
    description: '',
    lastUpdate: '',
    globalId: 'g',
    mode: 'snapshot',
    lastMirroredSnapshotAt: '',
    bytesPerSecond: 0,
    secondsUntilSynced: 0,
    peerState: '',
    peerDescription: '',
    scheduleInterval: '5m',
    splitBrain: false,
    lastSnapshotAt: '',
    ...fields,
  };
}

function service(
  answer: (remote: string, pool: string, image: string) => MirrorStatus__Output | Error,
) {
  const asked: string[] = [];
  const statusService = new ReplicationStatusService(
    strictMock<RemotesService>('RemotesService', {
      connectionFor: async (remoteId: string) => ({
        remoteId,
        endpoints: [],
        caCertPem: '',
        apiKey: '',
      }),
    }),
    strictMock<AgentClientRepository>('AgentClientRepository', {
      getMirrorStatus: async (
        c: AgentConnection,
        ref: Parameters<AgentClientRepository['getMirrorStatus']>[1],
      ) => {
        asked.push(`${c.remoteId} ${ref.pool ?? ''}/${ref.image ?? ''}`);
        const result = answer(c.remoteId, ref.pool ?? '', ref.image ?? '');
        if (result instanceof Error) throw result;
        return result;
      },
    }),
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
  );
  return { statusService, asked };
}

describe('ReplicationStatusService', () => {
  it('reads every disk at both sites (the target in its paired pool) and computes the RPO from the oldest disk', async () => {
    const { statusService, asked } = service((remote, _pool, image) =>
      remote === 'dc-a'
        ? status({
            primary: true,
            lastSnapshotAt: '2026-01-01T00:59:00Z',
            lastMirroredSnapshotAt:
              image === 'd0' ? '2026-01-01T00:58:00Z' : '2026-01-01T00:55:00Z',
          })
        : status({ lastMirroredSnapshotAt: '2026-01-01T00:50:00Z' }),
    );
    const observed = await statusService.observe(RECORD);
    expect(asked.sort()).toEqual(['dc-a rbd/d0', 'dc-a rbd/d1', 'dc-b rbd-b/d0', 'dc-b rbd-b/d1']);
    // The primary's view of what the secondary holds decides; the oldest disk (d1, 00:55) gives the RPO.
    expect(observed).toMatchObject({
      rpoSeconds: 300,
      lastMirroredSnapshotAt: '2026-01-01T00:55:00Z',
      splitBrain: false,
      health: 'ok',
      reachable: { source: true, target: true },
    });
    expect(observed.images.map((image) => image.lagSeconds)).toEqual([60, 240]);
  });

  it('still knows the RPO from the secondary when the primary’s site does not answer, and says the health is unknown', async () => {
    const { statusService } = service((remote) =>
      remote === 'dc-a'
        ? new AgentError(
            ErrorCode.RemoteUnreachable,
            'could not connect to dc-a:9443 within 3000 ms',
            'dc-a:9443',
          )
        : status({ lastMirroredSnapshotAt: '2026-01-01T00:45:00Z' }),
    );
    const observed = await statusService.observe(RECORD);
    expect(observed).toMatchObject({
      rpoSeconds: 900,
      health: 'unknown',
      reachable: { source: false, target: true },
    });
    expect(observed.images[0].sites[0]).toMatchObject({
      remote: 'dc-a',
      reachable: false,
      state: 'down+unknown',
      error: 'could not connect to dc-a:9443 within 3000 ms',
    });
  });

  it('reports split brain when an image is primary at both sites, and an error state as error', async () => {
    const both = service(() =>
      status({ primary: true, lastMirroredSnapshotAt: '2026-01-01T00:59:00Z' }),
    );
    expect(await both.statusService.observe(RECORD)).toMatchObject({
      splitBrain: true,
      health: 'split-brain',
    });
    const broken = service((remote) =>
      remote === 'dc-b'
        ? status({ state: 'up+error', description: 'failed to replay' })
        : status({ primary: true }),
    );
    expect(await broken.statusService.observe(RECORD)).toMatchObject({
      splitBrain: false,
      health: 'error',
    });
  });

  it('counts a disk never mirrored from when mirroring was enabled, and has no RPO when no site answers', async () => {
    const fresh = service((remote) => status({ primary: remote === 'dc-a' }));
    expect(await fresh.statusService.observe(RECORD)).toMatchObject({
      rpoSeconds: 3600,
      lastMirroredSnapshotAt: null,
    });
    const dark = service(() => new AgentError(ErrorCode.RemoteUnreachable, 'down', 'x:1'));
    expect((await dark.statusService.observe(RECORD)).rpoSeconds).toBeUndefined();
  });
});
