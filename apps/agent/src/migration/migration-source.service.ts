import { parseEndpoint } from '@debvisor/common';
import { X509Certificate } from 'node:crypto';
import type { MigrationProgress, PrepareMigrationResponse } from '@debvisor/proto';
import type {
  HypervisorDriver,
  MigrationAddress,
  MigrationStats,
  VmInstance,
} from '../drivers/hypervisor.driver';
import type { StorageDriver } from '../drivers/storage.driver';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { OperationLocks } from '../shared/operation-locks';
import type { VmDiskLocks } from '../vms/vm-disk-locks';
import type { VmIndexRepository } from '../vms/vm-index.repository';
import { toProtoVm } from '../vms/vm.mapper';
import { pskOf } from './migration-cookies';
import { decide, etaSeconds } from './migration-policy';
import { allPass, sourceChecks } from './migration-preflight';
import type { MigrateVmInput, MigrationDisk, PrepareMigrationInput } from './migration.requests';
import type { MirroredDisks } from './mirrored-disks';
import type { ImageRef } from '../drivers/storage.driver';
import type { LocalListener, MigrationSocketRepository } from './migration-socket.repository';
import type {
  TunnelClientRepository,
  TunnelStream,
  TunnelTarget,
} from './tunnel-client.repository';
import { operatorSteps, untilText } from './postcopy-recovery';
import { TunnelBridge, type Frame } from './tunnel-bridge';
import type { Socket } from 'node:net';
import { MAX_DATA_CHANNELS, splice } from './tunnel-data';
import type { TunnelDataClientRepository } from './tunnel-data-client.repository';
import { MigrationTimeline } from './migration-timeline';

/** How long the source waits for the target's answer to the tunnel's opening and to the commit. */
const HANDSHAKE_TIMEOUT_MS = 15_000;
const COMMIT_TIMEOUT_MS = 60_000;
/**
 * In post-copy the target may load the device state, wait for QEMU to run it and `cont` for longer
 * (each page a device touches comes over the link); the VM cannot come back here anyway.
 */
const POSTCOPY_COMMIT_TIMEOUT_MS = 120_000;
/** Between two attempts to resume a post-copy migration whose link broke. */
const RESUME_RETRY_MS = 2_000;
/** How much longer than the target's own bound the source waits for its mirrors to be synced. */
const SYNC_GRACE_MS = 15_000;
/** How long a finished migration's outcome is kept for GetMigration. */
const OUTCOME_TTL_MS = 10 * 60_000;

export type Emit = (progress: MigrationProgress) => void;

interface Outgoing {
  input: MigrateVmInput;
  vm: VmInstance;
  last: MigrationProgress;
  listeners: Set<Emit>;
  cancelRequested: boolean;
  /** The target was told to run the VM: from here on there is no way back. */
  committing: boolean;
  /** The commit came with post-copy: a broken link is resumed, never given up. */
  postcopy?: boolean;
  /**
   * Post-copy whose link stayed down past the recovery window: the last resume credential. The
   * migration ended "needs operator"; running it again (same id) resumes it.
   */
  stranded?: { credential: string | undefined; reason: string };
  done: Promise<MigrationProgress>;
  endedAt?: number;
  /** When each step happened here (logged at the end). */
  timeline: MigrationTimeline;
}

export interface MigrationSourceDeps {
  nodeId: string;
  progressIntervalMs: number;
  driver: HypervisorDriver;
  index: Pick<VmIndexRepository, 'removeIfOwnedBy'>;
  tunnels: Pick<TunnelClientRepository, 'open'>;
  /** The data connections of the tunnel transport: one TLS connection per QEMU channel. */
  data: Pick<TunnelDataClientRepository, 'open'>;
  sockets: Pick<MigrationSocketRepository, 'listenOnce' | 'listen'>;
  /** Held as 'migration' for the whole migration: storage operations on the VM are refused meanwhile, and it waits for none. */
  vmLocks: OperationLocks;
  /** Released when the VM moved to another cluster (within one, the target holds the same locks in the VM's name). */
  disks: Pick<VmDiskLocks, 'unlock'>;
  /** This cluster's CA: a target under another CA is another cluster. */
  clusterCa: X509Certificate;
  /** The disks' mirroring, which pre-flight reports. */
  storage: Pick<StorageDriver, 'mirrorStatus'>;
  /** Across clusters: the mirrored disks demoted here at the switchover (and promoted back when the move fails). */
  mirrored: Pick<MirroredDisks, 'release' | 'takeBack' | 'finalSnapshots' | 'timeoutMs'>;
  /** migration.postcopyRecoveryWindowSeconds: how long a broken post-copy link is resumed before it needs an operator. */
  postcopyRecoveryWindowMs?: number;
  clock: Clock;
  logger: Logger;
}

/**
 * The source end of migrations on this node: pre-flight, then the migration itself — tunnel (or
 * control channel) to the target, QEMU's migration, the policy (post-copy switch, abort at the
 * completion timeout), the switchover handshake and the clean-up. The VM runs in exactly one
 * place: the target runs it only after the source's commit, and the source stops it only after
 * the target confirmed; on any failure before the commit the VM keeps running here.
 */
export class MigrationSourceService {
  private readonly migrations = new Map<string, Outgoing>();

  constructor(private readonly deps: MigrationSourceDeps) {}

  async prepare(input: PrepareMigrationInput): Promise<PrepareMigrationResponse> {
    const vm = this.withAgentLock(await this.deps.driver.get(input.vm.uuid));
    const checks = sourceChecks(vm, input.vm.uuid, this.deps.nodeId, input.online);
    if (
      vm &&
      [...this.migrations.values()].some(
        (m) => m.vm.spec.uuid === vm.spec.uuid && m.endedAt === undefined,
      )
    ) {
      checks.push({
        name: 'vm-migration',
        result: 'fail',
        reason: 'the VM is already being migrated',
      });
    }
    const facts = await this.deps.driver.facts();
    return {
      checks,
      ok: allPass(checks),
      nodeId: this.deps.nodeId,
      vmState: vm ? toProtoVm(vm, this.deps.nodeId) : null,
      cpuModel: facts.cpuModel,
      cpuFlags: facts.cpuFlags,
      disks: vm ? await this.diskMirroring(vm) : [],
    };
  }

  /** The VM's disks with their mirroring here: a target in another cluster proves its images are their mirrors. */
  private async diskMirroring(vm: VmInstance): Promise<MigrationDisk[]> {
    return Promise.all(
      vm.spec.disks.map(async ({ pool, image }) => {
        const status = await this.deps.storage.mirrorStatus({ pool, image }).catch(() => undefined);
        return {
          pool,
          image,
          globalId: status?.globalId ?? '',
          primary: status?.primary ?? false,
          lastSnapshotAt: status?.lastSnapshotAt ?? '',
        };
      }),
    );
  }

  /** Starts (or, for the same migration id, follows) a migration; resolves with its final progress. */
  async migrate(input: MigrateVmInput, emit: Emit): Promise<MigrationProgress> {
    const timeline = new MigrationTimeline('source: MigrateVm');
    const existing = this.migrations.get(input.migrationId);
    if (existing) {
      if (existing.input.uuid !== input.uuid)
        throw new AgentError(
          ErrorCode.AlreadyExists,
          `migration ${input.migrationId} is of another VM`,
        );
      if (existing.stranded && existing.endedAt !== undefined)
        return this.resumeStranded(existing, emit);
      return this.follow(existing, emit);
    }
    const vm = this.withAgentLock(await this.deps.driver.get(input.uuid));
    if (!vm)
      throw new AgentError(
        ErrorCode.NotFound,
        `VM ${input.uuid} is not on node ${this.deps.nodeId}`,
      );
    const checks = sourceChecks(vm, input.uuid, this.deps.nodeId, !input.offline);
    const failed = checks.find((check) => check.result === 'fail');
    if (failed) throw new AgentError(ErrorCode.FailedPrecondition, failed.reason);
    if (
      !input.offline &&
      (input.allowPostcopy || input.mode === 'postcopy') &&
      vm.spec.disks.length > 0 &&
      this.isOtherCluster(input.targetCaPem)
    ) {
      // Post-copy runs the guest at the target before the switchover: on its disks' mirrors, read-only until promoted.
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        "post-copy cannot move a VM with disks to another cluster: the guest would run on its disks' read-only mirrors until they are promoted; migrate it pre-copy",
      );
    }
    if (
      [...this.migrations.values()].some(
        (m) => m.vm.spec.uuid === input.uuid && m.endedAt === undefined,
      )
    ) {
      throw new AgentError(ErrorCode.FailedPrecondition, 'the VM is already being migrated');
    }
    const release = this.deps.vmLocks.hold(input.uuid, 'migration', vm.spec.name);
    const outgoing: Outgoing = {
      input,
      vm,
      last: {
        phase: 'setup',
        message: 'opening the channel to the target',
        totalBytes: String(vm.spec.memoryBytes),
      },
      listeners: new Set([emit]),
      cancelRequested: false,
      committing: false,
      done: Promise.resolve(undefined as unknown as MigrationProgress),
      timeline,
    };
    this.migrations.set(input.migrationId, outgoing);
    outgoing.done = this.run(outgoing)
      .finally(release)
      .then((final) => {
        outgoing.endedAt = this.deps.clock.now().getTime();
        timeline.mark(`source: ${final.phase}`);
        timeline.log(this.deps.logger, { migrationId: input.migrationId, role: 'source' });
        this.publish(outgoing, final);
        this.prune();
        return final;
      });
    return outgoing.done;
  }

  /** Asks a migration under way to stop; refused once the target runs the VM. */
  cancel(migrationId: string): boolean {
    const outgoing = this.migrations.get(migrationId);
    if (!outgoing || outgoing.endedAt !== undefined) return false;
    if (outgoing.committing)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        'the VM already runs on the target (switchover or post-copy under way); the migration can no longer be cancelled',
      );
    outgoing.cancelRequested = true;
    return true;
  }

  progress(migrationId: string): MigrationProgress | undefined {
    return this.migrations.get(migrationId)?.last;
  }

  /** Cancels every migration under way (agent stop) and waits for them to settle. */
  async close(): Promise<void> {
    const running = [...this.migrations.values()].filter((m) => m.endedAt === undefined);
    for (const outgoing of running) if (!outgoing.committing) outgoing.cancelRequested = true;
    await Promise.all(running.map((m) => m.done.catch(() => undefined)));
  }

  private follow(outgoing: Outgoing, emit: Emit): Promise<MigrationProgress> {
    emit(outgoing.last);
    if (outgoing.endedAt !== undefined) return Promise.resolve(outgoing.last);
    outgoing.listeners.add(emit);
    return outgoing.done;
  }

  private publish(outgoing: Outgoing, progress: MigrationProgress): void {
    outgoing.last = progress;
    for (const listener of outgoing.listeners) {
      try {
        listener(progress);
      } catch {
        outgoing.listeners.delete(listener);
      }
    }
  }

  private prune(): void {
    const now = this.deps.clock.now().getTime();
    for (const [id, m] of this.migrations)
      if (m.endedAt !== undefined && m.endedAt < now - OUTCOME_TTL_MS) this.migrations.delete(id);
  }

  private async run(outgoing: Outgoing): Promise<MigrationProgress> {
    const { input, vm } = outgoing;
    const { driver, nodeId } = this.deps;
    const log = this.deps.logger.child({
      migrationId: input.migrationId,
      vm: input.uuid,
      target: input.targetNodeId,
    });
    const online = !input.offline;
    const carryBytes = online && input.transport === 'tunnel';
    const target: TunnelTarget = {
      endpoint: input.targetEndpoint,
      nodeId: input.targetNodeId,
      caPem: input.targetCaPem,
    };
    // The control stream and data connections to the target; replaced when post-copy resumes.
    let link = this.openLink(target, input.migrationId);
    let { channel, bridge } = link;
    let started = false;
    const startedAt = performance.now();
    try {
      link.stream.write({
        cookie: input.cookie,
        vmUuid: input.uuid,
        migrationId: input.migrationId,
        controlOnly: !carryBytes,
        dataConnections: carryBytes,
      });
      outgoing.timeline.mark('source: tunnel opened');
      await channel.expect(
        'ready',
        HANDSHAKE_TIMEOUT_MS,
        'the target did not accept the migration',
      );
      outgoing.timeline.mark('source: target ready');
      const ready = readyOf(channel.messages.get('ready'));
      if (outgoing.cancelRequested)
        return this.cancelled(bridge, vm, 'cancelled before the transfer began');

      if (!online) {
        this.publish(outgoing, {
          phase: 'switchover',
          message: 'moving the definition of the stopped VM',
        });
        const demoted = await this.handOverDisks(input, vm);
        outgoing.committing = true;
        bridge.send('commit');
        await channel
          .expect('committed', COMMIT_TIMEOUT_MS, 'the target did not confirm the definition')
          .catch(async (error: unknown) => {
            if (channel.refused) await this.deps.mirrored.takeBack(vm.spec, demoted);
            throw error;
          });
        await driver.undefine(input.uuid);
        await this.leaveDisks(input, vm);
        await this.forgetHere(input.uuid, vm.spec.name, log);
        return {
          phase: 'completed',
          message: `the stopped VM is now defined on node ${input.targetNodeId}`,
          totalTimeMs: elapsed(startedAt),
        };
      }

      let destination: MigrationAddress;
      if (carryBytes && ready.dataTokens) {
        const tokens = ready.dataTokens;
        const first = link;
        const local = await this.deps.sockets.listen(
          input.migrationId,
          tokens.length,
          (socket, index) => this.carryChannel(socket, target, index, tokens[index]!, first),
        );
        link.listener = local;
        destination = local.address;
      } else if (carryBytes) {
        // A target from before data connections: the bytes go through the tunnel stream itself.
        const local = await this.deps.sockets.listenOnce(input.migrationId);
        link.listener = local;
        destination = local.address;
        void local.accepted.then(
          (socket) => bridge.attach(socket),
          () => undefined,
        );
      } else destination = parseDataEndpoint(input.targetDataEndpoint);

      const allowPostcopy = input.allowPostcopy || input.mode === 'postcopy';
      await driver.startOutgoing(input.uuid, {
        migrationId: input.migrationId,
        destination,
        psk:
          input.transport === 'direct' && destination.kind === 'tcp'
            ? pskOf(input.cookie, { vmUuid: input.uuid, migrationId: input.migrationId })
            : undefined,
        downtimeLimitMs: input.downtimeLimitMs,
        bandwidthLimitBytes: input.bandwidthLimitBytes,
        autoConverge: input.autoConverge,
        allowPostcopy,
        multifdChannels: ready.multifdChannels,
      });
      started = true;
      outgoing.timeline.mark('source: QEMU migrate started');
      log.info({ transport: input.transport, mode: input.mode }, 'migration started');
      const policy = {
        mode: input.mode,
        allowPostcopy,
        memoryBytes: vm.spec.memoryBytes,
        completionTimeoutSecondsPerGib: input.completionTimeoutSecondsPerGib,
      };
      let switched = false;
      for (;;) {
        // QEMU's next MIGRATION / MIGRATION_PASS event ends the wait early: asked before the status is read.
        const next =
          driver.migrationEvent?.(input.uuid, this.deps.progressIntervalMs) ??
          this.deps.clock.sleep(this.deps.progressIntervalMs);
        const stats = await driver.outgoingStats(input.uuid);
        if (stats.status === 'completed') break;
        if ((stats.status === 'failed' || stats.status === 'cancelled') && outgoing.postcopy) {
          // QEMU gave up after the target ran the VM: nothing may run it here (the driver refuses)
          log.error({ error: stats.error }, 'post-copy migration failed after the switch');
          return {
            ...figures(stats),
            phase: 'failed',
            message: `QEMU's migration ${stats.status} during post-copy: ${stats.error ?? 'no reason given'}; the target node ${input.targetNodeId} runs the VM with the pages it has, and node ${nodeId} keeps its paused QEMU untouched — check the guest at node ${input.targetNodeId} before stopping node ${nodeId}'s`,
          };
        }
        if (stats.status === 'failed' || stats.status === 'cancelled') {
          await driver.cancelOutgoing(input.uuid).catch(() => undefined);
          bridge.send('abort', 'the source migration failed');
          return {
            ...figures(stats),
            phase: 'failed',
            message: `QEMU's migration failed: ${stats.error ?? stats.status}; the VM keeps running on node ${nodeId}`,
          };
        }
        if (channel.error && !outgoing.committing) {
          await driver.cancelOutgoing(input.uuid).catch(() => undefined);
          return {
            ...figures(stats),
            phase: 'failed',
            message: `${channel.error}; the VM keeps running on node ${nodeId}`,
          };
        }
        if (outgoing.cancelRequested && !outgoing.committing) {
          await driver.cancelOutgoing(input.uuid);
          return {
            ...this.cancelled(bridge, vm, 'cancelled during the transfer'),
            ...figures(stats),
            phase: 'cancelled',
          };
        }
        if (
          outgoing.postcopy &&
          (channel.error !== undefined || stats.status === 'postcopy-paused')
        ) {
          // The link broke during post-copy: the VM's memory is split between the two ends.
          const resumed = await this.relink(outgoing, link, target, log);
          if ('final' in resumed) return { ...figures(stats), ...resumed.final };
          link = resumed.link;
          ({ channel, bridge } = link);
          continue;
        }
        if (stats.status === 'postcopy-active' && !outgoing.committing) {
          // The guest now runs on the target (pages are pulled on demand): tell it to run. It cannot
          // come back here any more, so its disks go along even when they cannot change sides now.
          await this.handOverDisks(input, vm).catch((error: unknown) =>
            log.error(
              { err: error },
              'post-copy: the disks could not change sides; promote them at the target by hand',
            ),
          );
          outgoing.committing = true;
          outgoing.postcopy = true;
          bridge.send('commit');
          await channel
            .expect(
              'committed',
              POSTCOPY_COMMIT_TIMEOUT_MS,
              'the target did not confirm that it runs the VM',
            )
            .catch((error: unknown) => {
              // a link that broke meanwhile is resumed like any other (the target goes on committing)
              if (channel.refused || channel.error === undefined) throw error;
            });
          continue;
        }
        if (!switched) {
          const decision = decide(stats, performance.now() - startedAt, policy);
          if (decision.action === 'postcopy') {
            switched = true;
            log.info({ reason: decision.reason }, 'switching to post-copy');
            this.publish(outgoing, {
              ...figures(stats),
              phase: 'postcopy',
              message: decision.reason,
            });
            await driver.switchToPostcopy(input.uuid);
            continue;
          }
          if (decision.action === 'abort') {
            await driver.cancelOutgoing(input.uuid);
            bridge.send('abort', decision.reason);
            return {
              ...figures(stats),
              phase: 'failed',
              message: `${decision.reason}; the VM keeps running on node ${nodeId}`,
            };
          }
        }
        this.publish(outgoing, {
          ...figures(stats),
          phase: phaseOf(stats),
          // QEMU keeps every page on both ends while paused: the VM is not lost, only stalled
          message:
            stats.status === 'postcopy-paused'
              ? `the link to node ${input.targetNodeId} broke during post-copy: both ends are paused and keep the VM's memory until it can be resumed`
              : '',
        });
        await next;
      }

      outgoing.timeline.mark('source: QEMU completed');
      const stats = await driver.outgoingStats(input.uuid);
      // From here the VM is paused: what follows up to the target's 'committed' adds to QEMU's downtime.
      const switchover = new SwitchoverClock();
      if (!outgoing.committing) {
        this.publish(outgoing, {
          ...figures(stats),
          phase: 'switchover',
          message: 'all state sent; the target starts the VM',
        });
        let demoted: ImageRef[];
        try {
          const primary = await this.syncDisks(input, vm, channel, bridge, switchover, (message) =>
            this.publish(outgoing, { ...figures(stats), phase: 'switchover', message }),
          );
          demoted = await this.handOverDisks(input, vm, primary);
          if (demoted.length > 0) switchover.mark('disks demoted');
        } catch (error) {
          await driver.cancelOutgoing(input.uuid);
          bridge.send('abort', 'the disks could not change sides');
          const reason = error instanceof AgentError ? error.message : 'the storage failed';
          return {
            ...figures(stats),
            phase: 'failed',
            message: `the disks could not be handed over: ${reason}; the VM keeps running on node ${nodeId}`,
          };
        }
        outgoing.committing = true;
        bridge.send('commit');
        outgoing.timeline.mark('source: commit sent');
        try {
          await channel.expect(
            'committed',
            COMMIT_TIMEOUT_MS,
            'the target did not confirm that it runs the VM',
          );
          switchover.mark(
            demoted.length > 0 ? 'promoted and resumed at the target' : 'resumed at the target',
          );
          outgoing.timeline.mark('source: committed');
        } catch (error) {
          if (channel.refused) {
            // The target answered that it could not run the VM and aborted its side: resume here.
            await this.deps.mirrored.takeBack(vm.spec, demoted);
            await driver.cancelOutgoing(input.uuid);
            return {
              ...figures(stats),
              phase: 'failed',
              message: `${(error as Error).message}; the VM keeps running on node ${nodeId}`,
            };
          }
          // No answer: the target may or may not run the VM. Leave the paused source alone.
          log.error({ err: error }, 'switchover outcome unknown; the source VM stays paused');
          return {
            ...figures(stats),
            phase: 'failed',
            message: `switchover outcome unknown: ${(error as Error).message}; the VM is paused on node ${nodeId} — check node ${input.targetNodeId} before resuming it`,
          };
        }
      }
      // post-copy: every page is at the target; it drops its resume credential
      if (outgoing.postcopy) bridge.send('done');
      await driver.finishOutgoing(input.uuid);
      outgoing.timeline.mark('source: QEMU ended');
      await this.leaveDisks(input, vm);
      await this.forgetHere(input.uuid, vm.spec.name, log);
      outgoing.timeline.mark('source: index updated');
      log.info(
        {
          downtimeMs: stats.downtimeMs,
          totalTimeMs: stats.totalTimeMs,
          switchover: switchover.parts(),
        },
        'migration completed',
      );
      const other = this.isOtherCluster(input.targetCaPem) && switchover.totalMs() > 0;
      return {
        ...figures(stats),
        remainingBytes: '0',
        phase: 'completed',
        message: other
          ? `the VM runs on node ${input.targetNodeId} of the other cluster; ${switchover.describe(stats.downtimeMs ?? 0)}`
          : `the VM runs on node ${input.targetNodeId}`,
        downtimeMs: stats.downtimeMs ?? 0,
        totalTimeMs: stats.totalTimeMs ?? elapsed(startedAt),
      };
    } catch (error) {
      log.warn({ err: error }, 'migration failed');
      if (started && !outgoing.committing)
        await driver.cancelOutgoing(input.uuid).catch(() => undefined);
      if (!bridge.isClosed) bridge.send('abort', 'the source gave up');
      const reason =
        error instanceof AgentError ? error.message : 'internal error on the source agent';
      const where = outgoing.committing
        ? `the switchover state is uncertain — check node ${input.targetNodeId}`
        : `the VM keeps running on node ${nodeId}`;
      return {
        ...outgoing.last,
        phase: outgoing.cancelRequested && !outgoing.committing ? 'cancelled' : 'failed',
        message: `${reason}; ${where}`,
      };
    } finally {
      this.dropLink(link, false);
    }
  }

  /**
   * A post-copy migration that ended "needs operator" (its link stayed down past the window), run
   * again by its id: another window of resumption, then the rest of post-copy to its end.
   */
  private resumeStranded(outgoing: Outgoing, emit: Emit): Promise<MigrationProgress> {
    const { input } = outgoing;
    const stranded = outgoing.stranded!;
    outgoing.stranded = undefined;
    outgoing.endedAt = undefined;
    outgoing.listeners = new Set([emit]);
    const release = this.deps.vmLocks.hold(input.uuid, 'migration', outgoing.vm.spec.name);
    const log = this.deps.logger.child({
      migrationId: input.migrationId,
      vm: input.uuid,
      target: input.targetNodeId,
    });
    const target: TunnelTarget = {
      endpoint: input.targetEndpoint,
      nodeId: input.targetNodeId,
      caPem: input.targetCaPem,
    };
    outgoing.done = this.resumePostcopy(outgoing, stranded.credential, stranded.reason, target, log)
      .then((resumed) =>
        'final' in resumed
          ? resumed.final
          : this.finishPostcopy(outgoing, resumed.link, target, log),
      )
      .catch((error: unknown): MigrationProgress => {
        log.warn({ err: error }, 'resumed post-copy failed');
        return {
          phase: 'failed',
          message: `${error instanceof AgentError ? error.message : 'internal error on the source agent'}; the switchover state is uncertain — check node ${input.targetNodeId}`,
        };
      })
      .finally(release)
      .then((final) => {
        outgoing.endedAt = this.deps.clock.now().getTime();
        this.publish(outgoing, final);
        return final;
      });
    return outgoing.done;
  }

  /** A resumed post-copy to its end (resumed again if the link breaks again): the VM then runs at the target only. */
  private async finishPostcopy(
    outgoing: Outgoing,
    first: Link,
    target: TunnelTarget,
    log: Logger,
  ): Promise<MigrationProgress> {
    const { input, vm } = outgoing;
    const { driver } = this.deps;
    let link = first;
    try {
      for (;;) {
        const next =
          driver.migrationEvent?.(input.uuid, this.deps.progressIntervalMs) ??
          this.deps.clock.sleep(this.deps.progressIntervalMs);
        const stats = await driver.outgoingStats(input.uuid);
        if (stats.status === 'completed') {
          link.bridge.send('done');
          await driver.finishOutgoing(input.uuid);
          await this.leaveDisks(input, vm);
          await this.forgetHere(input.uuid, vm.spec.name, log);
          log.info('resumed post-copy migration completed');
          return {
            ...figures(stats),
            remainingBytes: '0',
            phase: 'completed',
            message: `the VM runs on node ${input.targetNodeId}`,
            downtimeMs: stats.downtimeMs ?? 0,
            totalTimeMs: stats.totalTimeMs ?? 0,
          };
        }
        if (stats.status === 'failed' || stats.status === 'cancelled')
          return {
            ...figures(stats),
            phase: 'failed',
            message: `QEMU's post-copy migration ${stats.status} after it resumed: ${stats.error ?? 'no reason given'}; check node ${input.targetNodeId}`,
          };
        if (link.channel.error !== undefined || stats.status === 'postcopy-paused') {
          const resumed = await this.relink(outgoing, link, target, log);
          if ('final' in resumed) return { ...figures(stats), ...resumed.final };
          link = resumed.link;
          continue;
        }
        this.publish(outgoing, { ...figures(stats), phase: phaseOf(stats), message: '' });
        await next;
      }
    } finally {
      this.dropLink(link, false);
    }
  }

  /** A control stream to the target (its 'ready' and control words go to the link's channel). */
  private openLink(target: TunnelTarget, migrationId: string): Link {
    const channel = new ControlChannel();
    const { stream, close } = this.deps.tunnels.open(
      target,
      migrationId.replace(/-/g, '').slice(0, 16),
    );
    const bridge = new TunnelBridge(
      stream,
      (frame) => channel.receive(frame),
      (error) => channel.closed(error),
    );
    return { channel, bridge, stream, close, sockets: new Set() };
  }

  /** Ends a link: its local listener, control stream and (`cutData`) its data connections. */
  private dropLink(link: Link, cutData = true): void {
    link.listener?.close();
    link.bridge.close(undefined);
    link.stream.end();
    link.close();
    if (cutData) for (const socket of link.sockets) socket.destroy();
  }

  /**
   * The post-copy link `broken` is gone: QEMU's side is paused (a link that went silent has not
   * reached QEMU yet, so its stream is cut on purpose), the link dropped, and the migration resumed
   * with the link's last resume credential (resumePostcopy).
   */
  private async relink(
    outgoing: Outgoing,
    broken: Link,
    target: TunnelTarget,
    log: Logger,
  ): Promise<{ link: Link } | { final: MigrationProgress }> {
    await this.deps.driver.pauseOutgoing?.(outgoing.input.uuid).catch(() => undefined);
    this.dropLink(broken);
    return this.resumePostcopy(
      outgoing,
      broken.channel.credential,
      broken.channel.error ?? 'the data connection broke',
      target,
      log,
    );
  }

  /**
   * The link to the target broke during post-copy. QEMU keeps every page on both ends (the source
   * those not sent yet, the target VM paused until they come): neither end may run the VM alone.
   * Within migration.postcopyRecoveryWindowSeconds the source reconnects over the same port with
   * the target's one-time resume credential, gets fresh data tokens, and resumes QEMU (migrate
   * with resume at the source, migrate-recover at the target). Answers the new link, or the final
   * "needs operator" progress when the window passed; nothing is started or stopped then.
   */
  private async resumePostcopy(
    outgoing: Outgoing,
    lastCredential: string | undefined,
    why: string,
    target: TunnelTarget,
    log: Logger,
  ): Promise<{ link: Link } | { final: MigrationProgress }> {
    const { input, vm } = outgoing;
    const { driver, clock } = this.deps;
    const until =
      clock.now().getTime() + (this.deps.postcopyRecoveryWindowMs ?? DEFAULT_RECOVERY_WINDOW_MS);
    let credential = lastCredential;
    let reason = why;
    const paused = `paused: the link to node ${input.targetNodeId} was lost during post-copy; recovering until ${untilText(until)}`;
    log.warn({ reason, until: new Date(until).toISOString() }, 'post-copy link lost; resuming');
    while (credential && clock.now().getTime() < until) {
      this.publish(outgoing, {
        ...outgoing.last,
        phase: 'postcopy',
        message: `${paused} (${reason})`,
      });
      const link = this.openLink(target, input.migrationId);
      try {
        link.stream.write({
          cookie: credential,
          vmUuid: input.uuid,
          migrationId: input.migrationId,
          controlOnly: false,
          dataConnections: true,
        });
        await link.channel.expect(
          'ready',
          Math.max(1, Math.min(HANDSHAKE_TIMEOUT_MS, until - clock.now().getTime())),
          'the target did not take the resumption',
        );
        credential = link.channel.credential ?? credential;
        const tokens = readyOf(link.channel.messages.get('ready')).dataTokens ?? [];
        if (tokens.length !== 1)
          throw new AgentError(ErrorCode.Internal, "the target's resumption is malformed");
        const local = await this.deps.sockets.listen(input.migrationId, 1, (socket) =>
          this.carryChannel(socket, target, 0, tokens[0]!, link),
        );
        link.listener = local;
        await driver.recoverOutgoing!(input.uuid, local.address);
        log.info('post-copy resumed');
        this.publish(outgoing, {
          ...outgoing.last,
          phase: 'postcopy',
          message: `post-copy resumed after the link to node ${input.targetNodeId} returned`,
        });
        return { link };
      } catch (error) {
        // the target hands out the next credential first: a refused attempt used the last one up
        credential = link.channel.credential ?? credential;
        reason = error instanceof AgentError ? error.message : String(error);
        log.warn({ reason }, 'post-copy not resumed yet');
        this.dropLink(link);
      }
      await clock.sleep(Math.max(0, Math.min(RESUME_RETRY_MS, until - clock.now().getTime())));
    }
    log.error({ reason }, 'post-copy not resumed within the window; both ends stay paused');
    outgoing.stranded = { credential, reason };
    return {
      final: {
        phase: 'failed',
        message: `${operatorSteps(vm.spec.name, this.deps.nodeId, input.targetNodeId)} (last: ${reason})`,
      },
    };
  }

  /**
   * One QEMU channel over its own data connection to the target. A connection the target refuses
   * (or cannot be opened) fails the migration with the reason; a break later is QEMU's to report.
   */
  private carryChannel(
    socket: Socket,
    target: TunnelTarget,
    index: number,
    token: string,
    link: Link,
  ): void {
    link.sockets.add(socket);
    this.deps.data.open(target, index, token).then(
      (remote) => {
        link.sockets.add(remote);
        void splice(socket, remote);
      },
      (error: unknown) => {
        socket.destroy();
        link.channel.broken(error instanceof AgentError ? error.message : 'a data channel failed');
      },
    );
  }

  private cancelled(bridge: TunnelBridge, vm: VmInstance, how: string): MigrationProgress {
    bridge.send('abort', 'cancelled');
    return {
      phase: 'cancelled',
      message: `${how}; the VM keeps running on node ${this.deps.nodeId}`,
      totalBytes: String(vm.spec.memoryBytes),
    };
  }

  /** The VM as pre-flight sees it: held when this agent's storage or power operation holds it. */
  private withAgentLock(vm: VmInstance | undefined): VmInstance | undefined {
    const holder = vm && !vm.runtime.lockedBy ? this.deps.vmLocks.holder(vm.spec.uuid) : undefined;
    return vm && holder ? { ...vm, runtime: { ...vm.runtime, lockedBy: holder } } : vm;
  }

  /**
   * Across clusters, the VM paused: a final mirror snapshot of every disk here, then the target's
   * word that its mirrors hold them (its progress goes to `progress`). The disks stay primary here
   * until then, so any failure leaves them as they were and the VM resumes here. Answers the disks
   * (all primary here: each took a mirror snapshot), or undefined when there was nothing to sync.
   */
  private async syncDisks(
    input: MigrateVmInput,
    vm: VmInstance,
    channel: ControlChannel,
    bridge: TunnelBridge,
    switchover: SwitchoverClock,
    progress: (message: string) => void,
  ): Promise<ImageRef[] | undefined> {
    if (!this.isOtherCluster(input.targetCaPem) || vm.spec.disks.length === 0) return undefined;
    const snapshots = await this.deps.mirrored.finalSnapshots(vm.spec);
    switchover.mark('final mirror snapshot');
    const disks = vm.spec.disks.map(({ pool, image }) => ({ pool, image }));
    if (snapshots.length === 0) return disks;
    progress(
      `final mirror snapshot of ${snapshots.length} disk(s) taken; waiting until the target's mirrors hold it`,
    );
    channel.progress = progress;
    bridge.send('sync', JSON.stringify(snapshots));
    try {
      await channel.expect(
        'synced',
        this.deps.mirrored.timeoutMs + SYNC_GRACE_MS,
        "the target did not confirm that its disks' mirrors hold the final mirror snapshot",
      );
    } finally {
      channel.progress = undefined;
    }
    switchover.mark('mirrors synced');
    return disks;
  }

  /** Across clusters: the mirrored disks demoted here, so that the target can promote them (see MirroredDisks). */
  private async handOverDisks(
    input: MigrateVmInput,
    vm: VmInstance,
    primary?: ImageRef[],
  ): Promise<ImageRef[]> {
    if (!this.isOtherCluster(input.targetCaPem)) return [];
    return this.deps.mirrored.release(vm.spec, primary);
  }

  /** Releases the disk locks of a VM that left for another cluster (its images there are other images). */
  private async leaveDisks(input: MigrateVmInput, vm: VmInstance): Promise<void> {
    if (!this.isOtherCluster(input.targetCaPem)) return;
    await this.deps.disks.unlock(vm.spec);
  }

  private isOtherCluster(targetCaPem: string): boolean {
    if (targetCaPem === '') return false;
    try {
      return new X509Certificate(targetCaPem).fingerprint256 !== this.deps.clusterCa.fingerprint256;
    } catch {
      return true;
    }
  }

  /** Drops this node's VM index entry (another cluster's target cannot do it). */
  private async forgetHere(uuid: string, name: string, log: Logger): Promise<void> {
    await this.deps.index
      .removeIfOwnedBy(uuid, { nodeId: this.deps.nodeId, name })
      .catch((error: unknown) =>
        log.warn({ err: error }, 'could not update the VM index; the next registration repairs it'),
      );
  }
}

/** migration.postcopyRecoveryWindowSeconds' default. */
const DEFAULT_RECOVERY_WINDOW_MS = 300_000;

/** A control stream to the target, with the local listener and data connections it carries. */
interface Link {
  channel: ControlChannel;
  bridge: TunnelBridge;
  stream: TunnelStream;
  close: () => void;
  listener?: Pick<LocalListener, 'close'>;
  sockets: Set<Socket>;
}

/** The parts of a switchover (the VM paused at the source), in order, with the time each took. */
class SwitchoverClock {
  private readonly started = performance.now();
  private last = this.started;
  private readonly marks: [string, number][] = [];

  mark(part: string): void {
    const now = performance.now();
    this.marks.push([part, Math.round(now - this.last)]);
    this.last = now;
  }

  totalMs(): number {
    return Math.round(this.last - this.started);
  }

  parts(): Record<string, number> {
    return Object.fromEntries(this.marks);
  }

  /** "paused 1234 ms: QEMU's downtime 200 ms, then final mirror snapshot 300 ms, …" */
  describe(qemuDowntimeMs: number): string {
    const parts = this.marks.map(([part, ms]) => `${part} ${ms} ms`).join(', ');
    return `paused about ${qemuDowntimeMs + this.totalMs()} ms: QEMU's downtime ${qemuDowntimeMs} ms, then ${parts}`;
  }
}

/** The control words of a tunnel, awaited one at a time. */
class ControlChannel {
  error: string | undefined;
  /** Receives the target's 'syncing' messages (how far its mirrors are) while set. */
  progress: ((message: string) => void) | undefined;
  /** The target answered 'error' (it refused, rather than vanished). */
  refused = false;
  /** The target's latest one-time resume credential (post-copy), kept out of `messages`. */
  credential: string | undefined;
  private waiting:
    { word: string; resolve: () => void; reject: (error: Error) => void } | undefined;
  private readonly seen = new Set<string>();
  /** The message that came with each control word ('ready' carries the data channels). */
  readonly messages = new Map<string, string>();

  receive(frame: Frame): void {
    if (frame.control === 'error') {
      this.refused = true;
      this.fail(`the target refused: ${frame.message || 'no reason given'}`);
      return;
    }
    if (!frame.control) return;
    if (frame.control === 'credential') {
      this.credential = frame.message || undefined;
      return;
    }
    if (frame.control === 'syncing') {
      this.progress?.(frame.message || '');
      return;
    }
    this.seen.add(frame.control);
    this.messages.set(frame.control, frame.message ?? '');
    if (this.waiting?.word === frame.control) this.waiting.resolve();
  }

  closed(error: Error | undefined): void {
    this.fail(
      error ? `the tunnel to the target broke: ${describe(error)}` : 'the target closed the tunnel',
    );
  }

  /** A data channel failed: the migration cannot go on. */
  broken(message: string): void {
    this.fail(message);
  }

  expect(word: string, timeoutMs: number, timeoutMessage: string): Promise<void> {
    if (this.seen.has(word)) return Promise.resolve();
    if (this.error) return Promise.reject(new AgentError(ErrorCode.Unavailable, this.error));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new AgentError(
              ErrorCode.DeadlineExceeded,
              `${timeoutMessage} within ${timeoutMs / 1000} s`,
            ),
          ),
        timeoutMs,
      );
      this.waiting = {
        word,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  private fail(message: string): void {
    if (this.error) return;
    this.error = message;
    this.waiting?.reject(new AgentError(ErrorCode.Unavailable, message));
  }
}

function describe(error: Error): string {
  const details = (error as { details?: string }).details;
  return (details ?? error.message).slice(0, 300);
}

function parseDataEndpoint(value: string): MigrationAddress {
  if (value.startsWith('libvirt:')) return { kind: 'libvirt', uri: value.slice('libvirt:'.length) };
  const endpoint = parseEndpoint(value.slice('tcp:'.length));
  if (!endpoint)
    throw new AgentError(
      ErrorCode.InvalidArgument,
      'invalid request: target_data_endpoint: not tcp:<host>:<port>',
    );
  return { kind: 'tcp', host: endpoint.host, port: endpoint.port };
}

/**
 * The target's 'ready': QEMU's multifd channel count, and (tunnel transport) the one-time tokens
 * of the data channels. Empty from a target before data connections: no multifd, no tokens.
 */
function readyOf(message: string | undefined): {
  multifdChannels: number;
  dataTokens?: string[];
} {
  if (!message) return { multifdChannels: 0 };
  let parsed: { multifdChannels?: unknown; dataTokens?: unknown };
  try {
    parsed = JSON.parse(message) as typeof parsed;
  } catch {
    throw new AgentError(ErrorCode.Internal, "the target's ready answer is unreadable");
  }
  const multifdChannels = parsed.multifdChannels ?? 0;
  const tokens = parsed.dataTokens;
  if (
    typeof multifdChannels !== 'number' ||
    !Number.isInteger(multifdChannels) ||
    multifdChannels < 0 ||
    multifdChannels >= MAX_DATA_CHANNELS ||
    (tokens !== undefined &&
      (!Array.isArray(tokens) ||
        tokens.length !== multifdChannels + 1 ||
        !tokens.every((t) => typeof t === 'string' && /^[0-9a-f]{64}$/.test(t))))
  )
    throw new AgentError(ErrorCode.Internal, "the target's ready answer is malformed");
  return { multifdChannels, ...(tokens ? { dataTokens: tokens as string[] } : {}) };
}

function phaseOf(stats: MigrationStats): string {
  if (stats.status === 'postcopy-active' || stats.status === 'postcopy-paused') return 'postcopy';
  if (stats.status === 'setup' || stats.status === 'none') return 'setup';
  if (stats.status === 'device' || stats.status === 'pre-switchover') return 'switchover';
  return 'precopy';
}

function figures(stats: MigrationStats): MigrationProgress {
  return {
    transferredBytes: String(stats.transferredBytes),
    remainingBytes: String(stats.remainingBytes),
    totalBytes: String(stats.totalBytes),
    dirtyRateBytes: String(stats.dirtyRateBytes),
    expectedDowntimeMs: Math.round(stats.expectedDowntimeMs),
    etaSeconds: etaSeconds(stats),
    iteration: stats.iteration,
  };
}

function elapsed(startedAt: number): number {
  return Math.round(performance.now() - startedAt);
}
