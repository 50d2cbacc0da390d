import type { MigrationProgress__Output, Vm__Output, VmSpec__Output } from '@debvisor/proto';
import type { ServiceError } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import type { CallContext } from '../rpc/call-context';
import type { PeerClientRepository, PeerTarget } from '../rpc/peer-client.repository';
import { AgentError, ErrorCode } from '../shared/agent-error';

/** A VM operation on a peer (start, stop, read) must answer within this. */
const CALL_TIMEOUT_MS = 120_000;
/** A live migration's stream may stay silent this long before it counts as lost. */
const STREAM_IDLE_MS = 120_000;

/** How the coordinator moves a VM: live (running) or offline (stopped: its definition only). */
export type MoveMode = 'live' | 'offline';

export interface VmMove {
  uuid: string;
  source: PeerTarget;
  target: PeerTarget;
  mode: MoveMode;
}

/**
 * The coordinator's calls to the agents for drains and restarts (docs/ha.md): the same intra-cluster
 * migration path the manager drives — PrepareMigration on the source (its checks and CPU) and on the
 * target (its reservation and one-time cookie), then MigrateVm on the source over the direct
 * transport — and VM starts and stops on the VM's node. Every call is this agent acting as itself
 * (AGENT_SELF_PERMISSIONS): the agents of one cluster trust each other's certificates.
 */
export class VmMoverRepository {
  constructor(
    private readonly peers: Pick<
      PeerClientRepository,
      'migrationCall' | 'migrateStream' | 'streamError' | 'vmCall'
    >,
    private readonly context: () => CallContext,
  ) {}

  /** The VM as its node sees it now. */
  async get(node: PeerTarget, uuid: string): Promise<Vm__Output> {
    return this.peers.vmCall(node, 'GetVm', { uuid }, this.context(), CALL_TIMEOUT_MS);
  }

  async start(node: PeerTarget, uuid: string): Promise<Vm__Output> {
    return this.peers.vmCall(node, 'StartVm', { uuid }, this.context(), CALL_TIMEOUT_MS);
  }

  /**
   * Starts a VM just moved to `node`: the target takes it over at the end of the move and may not
   * answer for it at once (NOT_FOUND until it has), so the start is tried again until `deadlineMs`.
   */
  async startMoved(
    node: PeerTarget,
    uuid: string,
    deadlineMs = CALL_TIMEOUT_MS,
  ): Promise<Vm__Output> {
    const until = Date.now() + deadlineMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.start(node, uuid);
      } catch (error) {
        if (!(error instanceof AgentError) || error.code !== ErrorCode.NotFound) throw error;
        if (Date.now() > until) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.min(attempt, 10) * 200));
      }
    }
  }

  async stop(node: PeerTarget, uuid: string): Promise<Vm__Output> {
    return this.peers.vmCall(node, 'StopVm', { uuid }, this.context(), CALL_TIMEOUT_MS);
  }

  /**
   * Moves the VM: resolves with the source's last word once it runs (or, offline, is defined) on
   * the target; rejects with the reason otherwise, the target's reservation released. A failed live
   * migration leaves the VM running on the source (the migration's own guarantee).
   */
  async move(move: VmMove, spec: VmSpec__Output): Promise<string> {
    const online = move.mode === 'live';
    const context = this.context();
    const common = {
      vm: spec,
      storageMap: {},
      networkMap: {},
      online,
      transport: 'direct',
      allowPostcopy: false,
      sourceCaPem: '',
      sourceDisks: [],
    };
    const source = await this.peers.migrationCall(
      move.source,
      'PrepareMigration',
      {
        ...common,
        role: 'source',
        targetNodeId: move.target.nodeId,
        migrationId: '',
        checkOnly: true,
        sourceNodeId: move.source.nodeId,
      },
      context,
      CALL_TIMEOUT_MS,
    );
    if (!source.ok) throw refused(move.source.nodeId, source.checks);
    const migrationId = randomUUID();
    const reservation = await this.peers.migrationCall(
      move.target,
      'PrepareMigration',
      {
        ...common,
        role: 'target',
        targetNodeId: move.target.nodeId,
        migrationId,
        checkOnly: false,
        sourceNodeId: move.source.nodeId,
        sourceCpuModel: source.cpuModel,
        sourceCpuFlags: source.cpuFlags,
      },
      context,
      CALL_TIMEOUT_MS,
    );
    const release = () =>
      this.peers
        .migrationCall(
          move.target,
          'CancelMigration',
          { migrationId, vmUuid: move.uuid, nodeId: move.target.nodeId },
          context,
          CALL_TIMEOUT_MS,
        )
        .catch(() => undefined);
    if (!reservation.ok || !reservation.cookie) {
      if (reservation.cookie) await release();
      throw refused(move.target.nodeId, reservation.checks);
    }
    const last = await this.follow(move, {
      uuid: move.uuid,
      migrationId,
      targetEndpoint: reservation.endpoint || move.target.endpoint,
      cookie: reservation.cookie,
      transport: 'direct',
      mode: 'precopy',
      autoConverge: true,
      downtimeLimitMs: 300,
      bandwidthLimitBytes: '0',
      completionTimeoutSecondsPerGib: 60,
      allowPostcopy: false,
      targetCaPem: reservation.caPem,
      targetNodeId: reservation.nodeId || move.target.nodeId,
      offline: !online,
      targetDataEndpoint: reservation.dataEndpoint,
    }).catch(async (error: unknown) => {
      await release();
      throw error;
    });
    if (last?.phase !== 'completed') {
      await release();
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the migration ${last?.phase ?? 'ended without a word'}: ${last?.message ?? 'no reason given'}`,
      );
    }
    return last.message;
  }

  /** MigrateVm on the source: its last progress once the stream ends. */
  private follow(
    move: VmMove,
    request: Parameters<PeerClientRepository['migrateStream']>[1],
  ): Promise<MigrationProgress__Output | undefined> {
    const stream = this.peers.migrateStream(move.source, request, this.context());
    return new Promise((resolve, reject) => {
      let last: MigrationProgress__Output | undefined;
      let timer: NodeJS.Timeout | undefined;
      const idle = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          stream.cancel();
          reject(
            new AgentError(
              ErrorCode.DeadlineExceeded,
              `node ${move.source.nodeId} said nothing about the migration for ${STREAM_IDLE_MS / 1000} s`,
            ),
          );
        }, STREAM_IDLE_MS);
      };
      idle();
      stream.on('data', (progress: MigrationProgress__Output) => {
        last = progress;
        idle();
      });
      stream.on('end', () => {
        clearTimeout(timer);
        resolve(last);
      });
      stream.on('error', (error: ServiceError) => {
        clearTimeout(timer);
        reject(this.peers.streamError(move.source, error));
      });
    });
  }
}

function refused(
  nodeId: string,
  checks: readonly { name: string; result: string; reason: string }[],
) {
  const failing = checks.filter((c) => c.result !== 'pass' && c.result !== 'warn');
  return new AgentError(
    ErrorCode.FailedPrecondition,
    `node ${nodeId} refused: ${failing.map((c) => `${c.name}: ${c.reason}`).join('; ') || 'no reason given'}`,
  );
}
