import type { PoolMirrorStatus__Output } from '@debvisor/proto';
import { Injectable, OnModuleInit } from '@nestjs/common';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { AuditService } from '../audit/audit.service';
import { ownerPrincipal, type Caller } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { RandomRepository } from '../common/random.repository';
import { RemotesService } from '../remotes/remotes.service';
import { TasksService } from '../tasks/tasks.service';
import { DrRunnerService, PAIR_PERMISSION } from './dr-runner.service';
import { MIRROR_READ_PERMISSION } from './replication-status.service';
import type { ReplicationPairEntity } from './replication-pair.entity';
import type { CreatePairBody, PairView, PoolHealthView } from './replication.dto';
import { ReplicationRepository } from './replication.repository';

export const PAIR_TASK = 'replication.pair';

/**
 * Pairs of two remotes' pools: created by a task that hands one cluster's peer bootstrap token to
 * the other (DrRunnerService.pair), listed with both sides' pool health, and forgotten again when
 * no VM mirrors through them.
 */
@Injectable()
export class ReplicationPairsService implements OnModuleInit {
  constructor(
    private readonly repository: ReplicationRepository,
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly tasks: TasksService,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    private readonly runner: DrRunnerService,
  ) {}

  onModuleInit(): void {
    this.tasks.registerHandler(PAIR_TASK, {
      // The agent calls the task makes are recorded as its owner's.
      run: (context) =>
        this.audit.runAs(ownerPrincipal(context.task.owner), () => this.runner.pair(context)),
      afterInterrupted: (task) => void this.interrupted(task.id),
    });
  }

  /** 202 + task; 404 for an unknown remote, 409 when these pools are paired (or being paired) already. */
  async create(caller: Caller, body: CreatePairBody): Promise<{ taskId: string; pairId: string }> {
    await this.remotes.get(body.remoteA);
    await this.remotes.get(body.remoteB);
    const existing = await this.repository.findPair(
      body.remoteA,
      body.poolA,
      body.remoteB,
      body.poolB,
    );
    if (existing && existing.state !== 'failed') {
      throw new DomainError(
        ErrorCode.Conflict,
        `pool ${body.poolA} of ${body.remoteA} and pool ${body.poolB} of ${body.remoteB} are ${existing.state === 'paired' ? 'paired already' : 'being paired'} (pair ${existing.id})`,
      );
    }
    // Refuses now (403) when a remote's credential may not pair, rather than in the task.
    await this.remotes.connectionFor(body.remoteA, null, PAIR_PERMISSION);
    await this.remotes.connectionFor(body.remoteB, null, PAIR_PERMISSION);
    const pairId = existing?.id ?? this.random.uuid();
    const accepted = await this.tasks.enqueue(
      { type: PAIR_TASK, remoteId: body.remoteA, vmId: null, owner: caller.display },
      {
        prepare: async (taskId) => {
          const now = this.clock.now();
          if (existing)
            await this.repository.setPairState(existing.id, 'pairing', null, now, taskId);
          else
            await this.repository.insertPair({
              id: pairId,
              ...body,
              state: 'pairing',
              error: null,
              taskId,
              createdAt: now,
              updatedAt: now,
            });
        },
      },
    );
    this.audit.note({
      taskId: accepted.taskId,
      pairId,
      remoteA: body.remoteA,
      poolA: body.poolA,
      remoteB: body.remoteB,
      poolB: body.poolB,
    });
    return { ...accepted, pairId };
  }

  async list(withHealth: boolean): Promise<{ items: PairView[] }> {
    const [pairs, counts] = await Promise.all([
      this.repository.listPairs(),
      this.repository.vmCounts(),
    ]);
    return {
      items: await Promise.all(
        pairs.map((pair) => this.view(pair, counts.get(pair.id) ?? 0, withHealth)),
      ),
    };
  }

  async get(id: string): Promise<PairView> {
    const pair = await this.repository.getPair(id);
    if (!pair) throw DomainError.notFound(`pair ${id}`);
    return this.view(pair, (await this.repository.vmCounts()).get(id) ?? 0, true);
  }

  /**
   * Forgets the pairing (the clusters keep their peers: remove them with `rbd mirror pool peer
   * remove` when the pools are not to be paired again). 409 while a VM mirrors through it.
   */
  async delete(id: string): Promise<void> {
    const pair = await this.repository.getPair(id);
    if (!pair) throw DomainError.notFound(`pair ${id}`);
    const vms = (await this.repository.vmCounts()).get(id) ?? 0;
    if (vms > 0)
      throw new DomainError(
        ErrorCode.Conflict,
        `${vms} VM(s) mirror through pair ${id}; disable their replication first`,
      );
    if (pair.state === 'pairing')
      throw new DomainError(
        ErrorCode.Conflict,
        `pair ${id} is being paired by task ${pair.taskId}; wait for it`,
      );
    await this.repository.deletePair(id);
    this.audit.note({
      pairId: id,
      remoteA: pair.remoteA,
      poolA: pair.poolA,
      remoteB: pair.remoteB,
      poolB: pair.poolB,
    });
  }

  /** A pairing cut off by a restart is failed, so that it can be asked for again. */
  private async interrupted(taskId: string): Promise<void> {
    const pair = await this.repository.getPairByTask(taskId);
    if (pair?.state === 'pairing')
      await this.repository.setPairState(
        pair.id,
        'failed',
        'interrupted by a manager restart; pair again',
        this.clock.now(),
      );
  }

  private async view(
    pair: ReplicationPairEntity,
    vms: number,
    withHealth: boolean,
  ): Promise<PairView> {
    const view: PairView = {
      id: pair.id,
      remoteA: pair.remoteA,
      poolA: pair.poolA,
      remoteB: pair.remoteB,
      poolB: pair.poolB,
      state: pair.state,
      error: pair.error,
      taskId: pair.taskId,
      vms,
      createdAt: pair.createdAt.toISOString(),
      updatedAt: pair.updatedAt.toISOString(),
    };
    if (!withHealth) return view;
    const [a, b] = await Promise.all([
      this.poolHealth(pair.remoteA, pair.poolA),
      this.poolHealth(pair.remoteB, pair.poolB),
    ]);
    return { ...view, health: { a, b } };
  }

  /** GetPoolMirrorStatus at one side; an unreachable side is shown as such, not an error. */
  private async poolHealth(remote: string, pool: string): Promise<PoolHealthView> {
    try {
      const connection = await this.remotes.connectionFor(remote, null, MIRROR_READ_PERMISSION);
      return healthView(
        remote,
        pool,
        await this.agents.getPoolMirrorStatus(connection, { pool, siteName: remote }),
      );
    } catch (error) {
      return {
        remote,
        pool,
        reachable: false,
        error:
          error instanceof DomainError
            ? error.message
            : 'the remote did not answer (see the manager log)',
        mode: 'unknown',
        siteName: '',
        peers: [],
        health: 'UNKNOWN',
        daemonHealth: 'UNKNOWN',
        imageHealth: 'UNKNOWN',
        states: {},
      };
    }
  }
}

function healthView(
  remote: string,
  pool: string,
  status: PoolMirrorStatus__Output,
): PoolHealthView {
  return {
    remote,
    pool,
    reachable: true,
    error: null,
    mode: status.mode,
    siteName: status.siteName,
    peers: status.peers.map((peer) => ({ siteName: peer.siteName, direction: peer.direction })),
    health: status.health || 'UNKNOWN',
    daemonHealth: status.daemonHealth || 'UNKNOWN',
    imageHealth: status.imageHealth || 'UNKNOWN',
    states: Object.fromEntries(
      Object.entries(status.states).map(([state, count]) => [state, Number(count)]),
    ),
  };
}
