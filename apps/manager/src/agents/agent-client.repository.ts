import { agentApiKeyId, parseEndpoint, rpcLabels, TRACE_ID_METADATA } from '@debvisor/common';
import { derToPem, fingerprintSha256 } from '@debvisor/pki';
import {
  debvisorV1,
  type CaRotationStatus__Output,
  type CancelMigrationResponse__Output,
  type ConsoleFrame,
  type ConsoleFrame__Output,
  type DefineVmRequest,
  type DisableMirroringRequest,
  type EnableMirroringRequest,
  type FenceImageResponse__Output,
  type HaEvent__Output,
  type HaNode__Output,
  type HaPolicy,
  type HaResource__Output,
  type HaServiceClient,
  type HaStatus__Output,
  type ImageRef,
  type ImportPeerBootstrapRequest,
  type MirrorStatus__Output,
  type PeerBootstrap__Output,
  type PoolMirrorRequest,
  type PoolMirrorStatus__Output,
  type PromoteImageRequest,
  type GetClusterInfoResponse__Output,
  type ListNodesResponse__Output,
  type ListVmsResponse__Output,
  type MigrateVmRequest,
  type MigrationProgress__Output,
  type MigrationServiceClient,
  type NodeServiceClient,
  type PrepareMigrationRequest,
  type PrepareMigrationResponse__Output,
  type StorageServiceClient,
  type VmSnapshot__Output,
  type Vm__Output,
  type VmServiceClient,
} from '@debvisor/proto';
import {
  credentials as grpcCredentials,
  Metadata,
  status as GrpcStatus,
  type ClientDuplexStream,
  type ClientReadableStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect, type DetailedPeerCertificate } from 'node:tls';
import { AuditService } from '../audit/audit.service';
import { ErrorCode } from '../common/error-code';
import { currentTraceId } from '../common/trace-context';
import { newTraceId } from '../common/trace-id';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { MetricsService } from '../health/metrics.service';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../pki/state-dir.repository';
import type { AgentConnection, PresentedCertificate, VmAction } from './agent-connection';
import { AgentError, allEndpointsFailed, translateGrpcError } from './agent-error';

interface Clients {
  readonly node: NodeServiceClient;
  readonly vm: VmServiceClient;
  readonly migration: MigrationServiceClient;
  readonly storage: StorageServiceClient;
  readonly ha: HaServiceClient;
}

/** A channel and the calls using it: a retired channel is closed once its last call ended. */
interface ChannelEntry {
  readonly clients: Clients;
  users: number;
  retired: boolean;
}

/** Clients for one call, released when the call ended. */
interface Lease {
  readonly clients: Clients;
  release(): void;
}

/** Which end of a migration a call is about: the VM, and the node holding that end (empty: the VM's node). */
export interface MigrationRef {
  readonly migrationId: string;
  readonly vmUuid: string;
  readonly nodeId: string;
}

/** The RPC each VM action calls. */
const VM_ACTION_RPC = {
  start: 'VmService.StartVm',
  shutdown: 'VmService.ShutdownVm',
  reboot: 'VmService.RebootVm',
  stop: 'VmService.StopVm',
} as const;

/** Power actions may wait for a guest; they get longer than reads once the agent is connected. */
const ACTION_DEADLINE_MS = 300_000;
/** Preparing a target starts an incoming QEMU: longer than a read. */
const PREPARE_DEADLINE_MS = 120_000;
/** A migration's progress stream lasts as long as the migration (its own policy bounds it): a day at most. */
const MIGRATION_STREAM_DEADLINE_MS = 24 * 3600_000;

/**
 * gRPC to DebVisor agents over mutual TLS: the manager's client certificate, the remote's CA as the
 * only root, `authorization: Bearer <key>` and the current trace id (x-debvisor-trace-id) on every
 * call, a deadline on every call, and the remote's endpoints tried in order. Each attempt is counted
 * in rpc_requests_total by service, method and gRPC status. Channels are cached per remote,
 * endpoint, trusted CA and the client certificate presented: when the remote's CA or the manager's
 * short-lived client certificate changes, new calls open a new channel and the old one is closed
 * once the calls running on it have finished (as when the remote changes: invalidate).
 */
@Injectable()
export class AgentClientRepository implements OnApplicationShutdown {
  private readonly clients = new Map<string, Map<string, ChannelEntry>>();

  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    @Inject(MANAGER_IDENTITY) private readonly identity: ManagerIdentity,
    private readonly metrics: MetricsService,
    private readonly audit: AuditService,
  ) {}

  getClusterInfo(connection: AgentConnection): Promise<GetClusterInfoResponse__Output> {
    return this.call(
      connection,
      'NodeService.GetClusterInfo',
      (clients, metadata, deadline, done) =>
        clients.node.getClusterInfo({}, metadata, { deadline }, done),
    );
  }

  listNodes(connection: AgentConnection): Promise<ListNodesResponse__Output> {
    return this.call(connection, 'NodeService.ListNodes', (clients, metadata, deadline, done) =>
      clients.node.listNodes({}, metadata, { deadline }, done),
    );
  }

  /** The cluster's CA rotation: trusted CAs, the issuing CA, which CA each node's certificate has. */
  getCaRotation(connection: AgentConnection): Promise<CaRotationStatus__Output> {
    return this.call(connection, 'NodeService.GetCaRotation', (clients, metadata, deadline, done) =>
      clients.node.getCaRotation({}, metadata, { deadline }, done),
    );
  }

  /** Begins a CA rotation; only an agent holding the cluster CA key can (FAILED_PRECONDITION elsewhere). */
  beginCaRotation(connection: AgentConnection): Promise<CaRotationStatus__Output> {
    return this.call(
      connection,
      'NodeService.BeginCaRotation',
      (clients, metadata, deadline, done) =>
        clients.node.beginCaRotation({}, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  /** Finishes a CA rotation: only the new CA trusted (`force`: although a node is still on the old one). */
  finishCaRotation(connection: AgentConnection, force: boolean): Promise<CaRotationStatus__Output> {
    return this.call(
      connection,
      'NodeService.FinishCaRotation',
      (clients, metadata, deadline, done) =>
        clients.node.finishCaRotation({ force }, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  /** Every VM of the cluster (any agent answers cluster-wide). */
  listVms(connection: AgentConnection): Promise<ListVmsResponse__Output> {
    return this.call(connection, 'VmService.ListVms', (clients, metadata, deadline, done) =>
      clients.vm.listVms({ nodeId: '' }, metadata, { deadline }, done),
    );
  }

  getVm(connection: AgentConnection, uuid: string): Promise<Vm__Output> {
    return this.call(
      connection,
      'VmService.GetVm',
      (clients, metadata, deadline, done) =>
        clients.vm.getVm({ uuid }, metadata, { deadline }, done),
      { vm: uuid },
    );
  }

  /** Defines a stopped VM from a kept definition (DR failover when the VM's own cluster is gone). */
  defineVm(connection: AgentConnection, request: DefineVmRequest): Promise<Vm__Output> {
    return this.call(
      connection,
      'VmService.DefineVm',
      (clients, metadata, deadline, done) =>
        clients.vm.defineVm(request, metadata, { deadline }, done),
      {
        connectFirst: true,
        vm: request.spec?.uuid,
      },
    );
  }

  /** Removes a stopped VM's definition (its disks stay): the stale copy a failover left at the old site. */
  undefineVm(connection: AgentConnection, uuid: string): Promise<Vm__Output> {
    return this.call(
      connection,
      'VmService.UndefineVm',
      (clients, metadata, deadline, done) =>
        clients.vm.undefineVm({ uuid }, metadata, { deadline }, done),
      {
        connectFirst: true,
        vm: uuid,
      },
    );
  }

  /** Carries out a power action; the agent forwards it to the node that owns the VM. */
  vmAction(connection: AgentConnection, action: VmAction, uuid: string): Promise<Vm__Output> {
    return this.call(
      connection,
      VM_ACTION_RPC[action],
      (clients, metadata, deadline, done) => {
        switch (action) {
          case 'start':
            return clients.vm.startVm({ uuid }, metadata, { deadline }, done);
          case 'shutdown':
            return clients.vm.shutdownVm(
              { uuid, timeoutSeconds: 0, forceStop: false },
              metadata,
              { deadline },
              done,
            );
          case 'reboot':
            return clients.vm.rebootVm({ uuid }, metadata, { deadline }, done);
          case 'stop':
            return clients.vm.stopVm({ uuid }, metadata, { deadline }, done);
        }
      },
      {
        connectFirst: true,
        deadlineMs: Math.max(ACTION_DEADLINE_MS, this.config.remoteTimeoutMs),
        vm: uuid,
      },
    );
  }

  /** Pre-flight of one end (check_only), or the target's reservation with its one-time cookie. */
  prepareMigration(
    connection: AgentConnection,
    request: PrepareMigrationRequest,
  ): Promise<PrepareMigrationResponse__Output> {
    return this.call(
      connection,
      'MigrationService.PrepareMigration',
      (clients, metadata, deadline, done) =>
        clients.migration.prepareMigration(request, metadata, { deadline }, done),
      {
        connectFirst: true,
        deadlineMs: Math.max(PREPARE_DEADLINE_MS, this.config.remoteTimeoutMs),
        vm: request.vm?.uuid,
      },
    );
  }

  /**
   * The source's migration, as its stream of progress until it ends (the last message has the phase
   * completed, failed or cancelled). The request carries the one-time cookie: it goes to the agent
   * and nowhere else. Aborting `signal` closes the stream (the migration goes on at the source).
   */
  migrateVm(
    connection: AgentConnection,
    request: MigrateVmRequest,
    signal?: AbortSignal,
  ): AsyncIterable<MigrationProgress__Output> {
    return this.stream(
      connection,
      'MigrationService.MigrateVm',
      (clients, metadata, deadline) => clients.migration.migrateVm(request, metadata, { deadline }),
      {
        vm: request.uuid,
        deadlineMs: MIGRATION_STREAM_DEADLINE_MS,
        signal,
      },
    );
  }

  /** Asks one end to stop (the source) or release its reservation (the target); false when it knows no such migration. */
  async cancelMigration(connection: AgentConnection, ref: MigrationRef): Promise<boolean> {
    const answer = await this.call<CancelMigrationResponse__Output>(
      connection,
      'MigrationService.CancelMigration',
      (clients, metadata, deadline, done) =>
        clients.migration.cancelMigration(ref, metadata, { deadline }, done),
      { connectFirst: true, vm: ref.vmUuid },
    );
    return answer.cancelled;
  }

  /** Where a migration stands on one end: its last progress (NotFound when that end does not know it). */
  getMigration(connection: AgentConnection, ref: MigrationRef): Promise<MigrationProgress__Output> {
    return this.call(
      connection,
      'MigrationService.GetMigration',
      (clients, metadata, deadline, done) =>
        clients.migration.getMigration(ref, metadata, { deadline }, done),
      {
        vm: ref.vmUuid,
      },
    );
  }

  // --- RBD mirroring (replication/) ---------------------------------------------------------------

  enableMirroring(
    connection: AgentConnection,
    request: EnableMirroringRequest,
  ): Promise<MirrorStatus__Output> {
    return this.call(
      connection,
      'StorageService.EnableMirroring',
      (clients, metadata, deadline, done) =>
        clients.storage.enableMirroring(request, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  disableMirroring(
    connection: AgentConnection,
    request: DisableMirroringRequest,
  ): Promise<MirrorStatus__Output> {
    return this.call(
      connection,
      'StorageService.DisableMirroring',
      (clients, metadata, deadline, done) =>
        clients.storage.disableMirroring(request, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  getMirrorStatus(connection: AgentConnection, ref: ImageRef): Promise<MirrorStatus__Output> {
    return this.call(
      connection,
      'StorageService.GetMirrorStatus',
      (clients, metadata, deadline, done) =>
        clients.storage.getMirrorStatus(ref, metadata, { deadline }, done),
    );
  }

  createMirrorSnapshot(connection: AgentConnection, ref: ImageRef): Promise<MirrorStatus__Output> {
    return this.call(
      connection,
      'StorageService.CreateMirrorSnapshot',
      (clients, metadata, deadline, done) =>
        clients.storage.createMirrorSnapshot(ref, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  promoteImage(
    connection: AgentConnection,
    request: PromoteImageRequest,
  ): Promise<MirrorStatus__Output> {
    return this.call(
      connection,
      'StorageService.PromoteImage',
      (clients, metadata, deadline, done) =>
        clients.storage.promoteImage(request, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  demoteImage(connection: AgentConnection, ref: ImageRef): Promise<MirrorStatus__Output> {
    return this.call(
      connection,
      'StorageService.DemoteImage',
      (clients, metadata, deadline, done) =>
        clients.storage.demoteImage(ref, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  resyncImage(connection: AgentConnection, ref: ImageRef): Promise<MirrorStatus__Output> {
    return this.call(
      connection,
      'StorageService.ResyncImage',
      (clients, metadata, deadline, done) =>
        clients.storage.resyncImage(ref, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  /**
   * The pool's peer bootstrap token. It holds a Ceph secret key: the caller passes it straight to
   * importPeerBootstrap and keeps it nowhere (the audit entry of this call names the RPC only).
   */
  createPeerBootstrap(
    connection: AgentConnection,
    request: PoolMirrorRequest,
  ): Promise<PeerBootstrap__Output> {
    return this.call(
      connection,
      'StorageService.CreatePeerBootstrap',
      (clients, metadata, deadline, done) =>
        clients.storage.createPeerBootstrap(request, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  importPeerBootstrap(
    connection: AgentConnection,
    request: ImportPeerBootstrapRequest,
  ): Promise<PoolMirrorStatus__Output> {
    return this.call(
      connection,
      'StorageService.ImportPeerBootstrap',
      (clients, metadata, deadline, done) =>
        clients.storage.importPeerBootstrap(request, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  getPoolMirrorStatus(
    connection: AgentConnection,
    request: PoolMirrorRequest,
  ): Promise<PoolMirrorStatus__Output> {
    return this.call(
      connection,
      'StorageService.GetPoolMirrorStatus',
      (clients, metadata, deadline, done) =>
        clients.storage.getPoolMirrorStatus(request, metadata, { deadline }, done),
    );
  }

  /** Blocklists the image's clients and breaks its locks (before a forced promotion elsewhere). */
  fenceImage(connection: AgentConnection, ref: ImageRef): Promise<FenceImageResponse__Output> {
    return this.call(
      connection,
      'StorageService.FenceImage',
      (clients, metadata, deadline, done) =>
        clients.storage.fenceImage(ref, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  // --- high availability inside the cluster (ha/) ----------------------------------------------

  /** The cluster's HA state: coordinator and fencing epoch, every node's HA state and health, every HA VM. */
  getHaStatus(connection: AgentConnection): Promise<HaStatus__Output> {
    return this.call(connection, 'HaService.GetHaStatus', (clients, metadata, deadline, done) =>
      clients.ha.getHaStatus({}, metadata, { deadline }, done),
    );
  }

  /** The cluster's HA events strictly after the event id `after` ('' = the oldest kept), oldest first. */
  async listHaEvents(
    connection: AgentConnection,
    after: string,
    limit: number,
  ): Promise<HaEvent__Output[]> {
    const answer = await this.call<{ events: HaEvent__Output[] }>(
      connection,
      'HaService.ListHaEvents',
      (clients, metadata, deadline, done) =>
        clients.ha.listHaEvents({ after, limit }, metadata, { deadline }, done),
    );
    return answer.events;
  }

  /** Puts a VM under HA or changes its policy (the cluster keeps it in etcd). */
  setHaPolicy(
    connection: AgentConnection,
    vmUuid: string,
    policy: HaPolicy,
  ): Promise<HaResource__Output> {
    return this.call(
      connection,
      'HaService.SetHaPolicy',
      (clients, metadata, deadline, done) =>
        clients.ha.setHaPolicy({ vmUuid, policy }, metadata, { deadline }, done),
      { connectFirst: true, vm: vmUuid },
    );
  }

  /** Takes a VM out of HA; false when it was not under HA. */
  async removeHaPolicy(connection: AgentConnection, uuid: string): Promise<boolean> {
    const answer = await this.call<{ removed: boolean }>(
      connection,
      'HaService.RemoveHaPolicy',
      (clients, metadata, deadline, done) =>
        clients.ha.removeHaPolicy({ uuid }, metadata, { deadline }, done),
      { connectFirst: true, vm: uuid },
    );
    return answer.removed;
  }

  /** Starts draining a node (enabled) or returns it to service; answers at once with the node's HA state. */
  setMaintenance(
    connection: AgentConnection,
    nodeId: string,
    enabled: boolean,
  ): Promise<HaNode__Output> {
    return this.call(
      connection,
      'HaService.SetMaintenance',
      (clients, metadata, deadline, done) =>
        clients.ha.setMaintenance({ nodeId, enabled }, metadata, { deadline }, done),
      { connectFirst: true },
    );
  }

  /** A VM snapshot (all its disks at one point); the VM's node freezes the guest when asked and able. */
  snapshotVm(
    connection: AgentConnection,
    request: { vmUuid: string; snapshot: string; freeze: boolean },
  ): Promise<VmSnapshot__Output> {
    return this.call(
      connection,
      'StorageService.SnapshotVm',
      (clients, metadata, deadline, done) =>
        clients.storage.snapshotVm(request, metadata, { deadline }, done),
      {
        connectFirst: true,
        deadlineMs: Math.max(ACTION_DEADLINE_MS, this.config.remoteTimeoutMs),
        vm: request.vmUuid,
      },
    );
  }

  /** The VM's snapshots, oldest first as the agent answers them. */
  async listVmSnapshots(
    connection: AgentConnection,
    vmUuid: string,
  ): Promise<VmSnapshot__Output[]> {
    const answer = await this.call<{ snapshots: VmSnapshot__Output[] }>(
      connection,
      'StorageService.ListVmSnapshots',
      (clients, metadata, deadline, done) =>
        clients.storage.listVmSnapshots({ uuid: vmUuid }, metadata, { deadline }, done),
      { vm: vmUuid },
    );
    return answer.snapshots;
  }

  /** Removes a VM snapshot from every disk; false when the agent had none of that name. */
  async deleteVmSnapshot(
    connection: AgentConnection,
    ref: { vmUuid: string; snapshot: string },
  ): Promise<boolean> {
    const answer = await this.call<{ deleted: boolean }>(
      connection,
      'StorageService.DeleteVmSnapshot',
      (clients, metadata, deadline, done) =>
        clients.storage.deleteVmSnapshot(ref, metadata, { deadline }, done),
      {
        connectFirst: true,
        deadlineMs: Math.max(ACTION_DEADLINE_MS, this.config.remoteTimeoutMs),
        vm: ref.vmUuid,
      },
    );
    return answer.deleted;
  }

  /** Rolls every disk of a stopped VM back to the snapshot. */
  rollbackVm(
    connection: AgentConnection,
    ref: { vmUuid: string; snapshot: string },
  ): Promise<VmSnapshot__Output> {
    return this.call(
      connection,
      'StorageService.RollbackVm',
      (clients, metadata, deadline, done) =>
        clients.storage.rollbackVm(ref, metadata, { deadline }, done),
      {
        connectFirst: true,
        deadlineMs: Math.max(ACTION_DEADLINE_MS, this.config.remoteTimeoutMs),
        vm: ref.vmUuid,
      },
    );
  }

  /**
   * Connects once without verifying the agent (presenting the manager's client certificate) and
   * answers the certificate chain it presented, leaf first: how a pinned fingerprint is checked and
   * how a user confirms what they are about to trust.
   */
  probeCertificates(endpoint: string): Promise<PresentedCertificate[]> {
    const parsed = parseEndpoint(endpoint);
    if (!parsed)
      return Promise.reject(
        new AgentError(ErrorCode.BadRequest, `not an endpoint: ${endpoint}`, endpoint),
      );
    const timeoutMs = this.config.remoteTimeoutMs;
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (action: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        action();
      };
      const socket = tlsConnect({
        host: parsed.host,
        port: parsed.port,
        servername: isIP(parsed.host) ? undefined : parsed.host,
        rejectUnauthorized: false,
        ALPNProtocols: ['h2'],
        cert: this.identity.client.certPem,
        key: this.identity.client.keyPem,
        minVersion: 'TLSv1.2',
      });
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new AgentError(
                ErrorCode.RemoteUnreachable,
                `${endpoint} did not complete a TLS handshake within ${timeoutMs} ms`,
                endpoint,
              ),
            ),
          ),
        timeoutMs,
      );
      socket.once('secureConnect', () => {
        const chain = chainOf(socket.getPeerCertificate(true));
        finish(() =>
          chain.length > 0
            ? resolve(chain)
            : reject(
                new AgentError(
                  ErrorCode.RemoteTlsFailed,
                  `${endpoint} presented no certificate`,
                  endpoint,
                ),
              ),
        );
      });
      socket.once('error', (error: NodeJS.ErrnoException) =>
        finish(() =>
          reject(
            new AgentError(
              ErrorCode.RemoteUnreachable,
              `cannot connect to ${endpoint}: ${error.code ?? error.message}`,
              endpoint,
              { cause: error },
            ),
          ),
        ),
      );
    });
  }

  /**
   * A VM's console (VmService.Console) on the first endpoint that connects, its open frame sent:
   * the caller relays data frames both ways and ends or cancels the call. No deadline (a console
   * lasts as long as its viewer); audited as an agent call when it ends.
   */
  async openConsole(
    connection: AgentConnection,
    uuid: string,
  ): Promise<ClientDuplexStream<ConsoleFrame, ConsoleFrame__Output>> {
    const keyId = agentApiKeyId(connection.apiKey);
    const rpc = 'VmService.Console';
    const audited = await this.audit.agentCallStarting({
      remote: connection.remoteId,
      rpc,
      vm: uuid,
      keyId,
    });
    const timeoutMs = this.config.remoteTimeoutMs;
    const failures: AgentError[] = [];
    for (const endpoint of connection.endpoints) {
      const { clients, release } = this.lease(connection, endpoint);
      try {
        await waitForReady(clients.vm, new Date(Date.now() + timeoutMs), endpoint, timeoutMs);
      } catch (error) {
        release();
        this.metrics.rpc.backendConnectionError('agent');
        failures.push(error as AgentError);
        continue;
      }
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${connection.apiKey}`);
      metadata.set(TRACE_ID_METADATA, currentTraceId() ?? newTraceId());
      const call = clients.vm.console(metadata);
      let finished = false;
      const finish = (error?: ServiceError) => {
        if (finished) return;
        finished = true;
        release();
        const failure =
          error && error.code !== GrpcStatus.CANCELLED
            ? translateGrpcError(error, endpoint, timeoutMs)
            : undefined;
        void this.audit.agentCallFinished(audited, failure);
      };
      call.on('error', (error: ServiceError) => finish(error));
      call.on('end', () => finish());
      call.on('close', () => finish());
      call.write({ open: { uuid } });
      return call;
    }
    const failure =
      failures.length === 0
        ? new AgentError(
            ErrorCode.RemoteUnreachable,
            `remote ${connection.remoteId} has no endpoints`,
            '',
          )
        : allEndpointsFailed(connection.remoteId, failures);
    await this.audit.agentCallFinished(audited, failure);
    throw failure;
  }

  /** A console call's error, as the manager reports it. */
  consoleError(error: ServiceError): AgentError {
    return translateGrpcError(error, '', this.config.remoteTimeoutMs);
  }

  /**
   * Forgets the channels of a remote or channel group (after it changed or was removed): new calls
   * open new ones, and each old one is closed once the calls running on it have finished.
   */
  invalidate(group: string): void {
    const byEndpoint = this.clients.get(group);
    this.clients.delete(group);
    for (const entry of byEndpoint?.values() ?? []) retire(entry);
  }

  /** After running tasks had their grace period (TasksService.beforeApplicationShutdown). */
  onApplicationShutdown(): void {
    for (const byEndpoint of this.clients.values())
      for (const entry of byEndpoint.values()) closeClients(entry.clients);
    this.clients.clear();
  }

  /**
   * Every call goes to the audit log (agent.call): one that changes something is recorded before it
   * is made, and not made when that fails; every call is recorded with its outcome.
   */
  private async call<T>(
    connection: AgentConnection,
    rpc: `${string}.${string}`,
    invoke: (
      clients: Clients,
      metadata: Metadata,
      deadline: Date,
      done: (error: ServiceError | null, value?: T) => void,
    ) => unknown,
    options: { connectFirst?: boolean; deadlineMs?: number; vm?: string } = {},
  ): Promise<T> {
    const keyId = agentApiKeyId(connection.apiKey);
    const audited = await this.audit.agentCallStarting({
      remote: connection.remoteId,
      rpc,
      vm: options.vm,
      keyId,
    });
    try {
      const value = await this.callEndpoints(connection, rpc, invoke, options);
      await this.audit.agentCallFinished(audited);
      return value;
    } catch (error) {
      await this.audit.agentCallFinished(audited, error);
      throw error;
    }
  }

  /**
   * A server stream, audited and counted like a call: opened on the first endpoint that connects
   * (never re-opened on another once it started), its messages yielded as they come, gRPC errors
   * translated.
   */
  private async *stream<T>(
    connection: AgentConnection,
    rpc: `${string}.${string}`,
    open: (clients: Clients, metadata: Metadata, deadline: Date) => ClientReadableStream<T>,
    options: { vm?: string; deadlineMs: number; signal?: AbortSignal },
  ): AsyncGenerator<T> {
    if (options.signal?.aborted) return;
    const keyId = agentApiKeyId(connection.apiKey);
    const audited = await this.audit.agentCallStarting({
      remote: connection.remoteId,
      rpc,
      vm: options.vm,
      keyId,
    });
    const { service, method } = rpcLabels(rpc);
    const timeoutMs = this.config.remoteTimeoutMs;
    const traceId = currentTraceId() ?? newTraceId();
    let failure: unknown;
    let code: number = GrpcStatus.UNAVAILABLE;
    const started = performance.now();
    try {
      const failures: AgentError[] = [];
      let opened:
        { call: ClientReadableStream<T>; endpoint: string; release: () => void } | undefined;
      for (const endpoint of connection.endpoints) {
        const { clients, release } = this.lease(connection, endpoint);
        try {
          await waitForReady(clients.vm, new Date(Date.now() + timeoutMs), endpoint, timeoutMs);
        } catch (error) {
          release();
          this.metrics.rpc.backendConnectionError('agent');
          failures.push(error as AgentError);
          continue;
        }
        const metadata = new Metadata();
        metadata.set('authorization', `Bearer ${connection.apiKey}`);
        metadata.set(TRACE_ID_METADATA, traceId);
        opened = {
          call: open(clients, metadata, new Date(Date.now() + options.deadlineMs)),
          endpoint,
          release,
        };
        break;
      }
      if (!opened) {
        throw failures.length === 0
          ? new AgentError(
              ErrorCode.RemoteUnreachable,
              `remote ${connection.remoteId} has no endpoints`,
              '',
            )
          : allEndpointsFailed(connection.remoteId, failures);
      }
      const { call, endpoint } = opened;
      const abort = () => call.cancel();
      options.signal?.addEventListener('abort', abort, { once: true });
      try {
        for await (const message of call) yield message as T;
        code = GrpcStatus.OK;
      } catch (error) {
        const serviceError = error as ServiceError;
        code = typeof serviceError.code === 'number' ? serviceError.code : GrpcStatus.UNKNOWN;
        if (code === GrpcStatus.CANCELLED && options.signal?.aborted) return;
        throw typeof serviceError.code === 'number'
          ? translateGrpcError(serviceError, endpoint, options.deadlineMs)
          : error;
      } finally {
        options.signal?.removeEventListener('abort', abort);
        // The consumer stopped early (or failed): close the stream rather than leave it open.
        call.cancel();
        opened.release();
      }
    } catch (error) {
      failure = error;
      throw error;
    } finally {
      this.metrics.rpc.observeCall(service, method, code, (performance.now() - started) / 1000);
      await this.audit.agentCallFinished(audited, failure);
    }
  }

  private async callEndpoints<T>(
    connection: AgentConnection,
    rpc: `${string}.${string}`,
    invoke: (
      clients: Clients,
      metadata: Metadata,
      deadline: Date,
      done: (error: ServiceError | null, value?: T) => void,
    ) => unknown,
    options: { connectFirst?: boolean; deadlineMs?: number },
  ): Promise<T> {
    const timeoutMs = this.config.remoteTimeoutMs;
    const failures: AgentError[] = [];
    const { service, method } = rpcLabels(rpc);
    const traceId = currentTraceId() ?? newTraceId();
    for (const endpoint of connection.endpoints) {
      const { clients, release } = this.lease(connection, endpoint);
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${connection.apiKey}`);
      metadata.set(TRACE_ID_METADATA, traceId);
      const started = performance.now();
      // An agent that could not be reached at all counts as UNAVAILABLE.
      let code: number = GrpcStatus.UNAVAILABLE;
      try {
        if (options.connectFirst)
          await waitForReady(clients.vm, new Date(Date.now() + timeoutMs), endpoint, timeoutMs);
        const deadline = new Date(Date.now() + (options.deadlineMs ?? timeoutMs));
        const value = await new Promise<T>((resolve, reject) => {
          invoke(clients, metadata, deadline, (error, answer) => {
            code = error ? error.code : GrpcStatus.OK;
            if (error) reject(translateGrpcError(error, endpoint, options.deadlineMs ?? timeoutMs));
            else resolve(answer as T);
          });
        });
        this.metrics.rpc.observeCall(service, method, code, (performance.now() - started) / 1000);
        return value;
      } catch (error) {
        this.metrics.rpc.observeCall(service, method, code, (performance.now() - started) / 1000);
        if (!(error instanceof AgentError) || !error.triesNextEndpoint) throw error;
        this.metrics.rpc.backendConnectionError('agent');
        failures.push(error);
      } finally {
        release();
      }
    }
    if (failures.length === 0)
      throw new AgentError(
        ErrorCode.RemoteUnreachable,
        `remote ${connection.remoteId} has no endpoints`,
        '',
      );
    throw allEndpointsFailed(connection.remoteId, failures);
  }

  /**
   * The channel to `endpoint` for the remote's CA and the client certificate presented now, held
   * until release(). Channels opened with another CA or certificate are retired: closed once the
   * calls still running on them have finished.
   */
  private lease(connection: AgentConnection, endpoint: string): Lease {
    const group = connection.channelGroup ?? connection.remoteId;
    let byEndpoint = this.clients.get(group);
    if (!byEndpoint) this.clients.set(group, (byEndpoint = new Map()));
    // The trust anchor and the client certificate are part of the key: a changed CA never reuses a
    // channel verified with the old one, a renewed certificate is presented on new connections.
    const key = [
      endpoint,
      // The whole bundle: during a CA rotation it holds the old and the new CA.
      createHash('sha256').update(connection.caCertPem).digest('hex'),
      fingerprintSha256(this.identity.client.certPem),
    ].join('|');
    let entry = byEndpoint.get(key);
    if (!entry) {
      for (const [staleKey, stale] of byEndpoint) {
        if (!staleKey.startsWith(`${endpoint}|`)) continue;
        byEndpoint.delete(staleKey);
        retire(stale);
      }
      entry = { clients: this.openClients(connection, endpoint), users: 0, retired: false };
      byEndpoint.set(key, entry);
    }
    const leased = entry;
    leased.users++;
    let released = false;
    return {
      clients: leased.clients,
      release: () => {
        if (released) return;
        released = true;
        leased.users--;
        if (leased.retired && leased.users === 0) closeClients(leased.clients);
      },
    };
  }

  private openClients(connection: AgentConnection, endpoint: string): Clients {
    const v1 = debvisorV1();
    const credentials = grpcCredentials.createSsl(
      Buffer.from(connection.caCertPem),
      Buffer.from(this.identity.client.keyPem),
      Buffer.from(this.identity.client.certPem),
    );
    const channelOptions = {
      // A recovered agent is picked up again within seconds.
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': 5000,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
    };
    const node = new v1.NodeService(endpoint, credentials, channelOptions);
    const vm = new v1.VmService(endpoint, credentials, {
      ...channelOptions,
      channelOverride: node.getChannel(),
    });
    const migration = new v1.MigrationService(endpoint, credentials, {
      ...channelOptions,
      channelOverride: node.getChannel(),
    });
    const storage = new v1.StorageService(endpoint, credentials, {
      ...channelOptions,
      channelOverride: node.getChannel(),
    });
    const ha = new v1.HaService(endpoint, credentials, {
      ...channelOptions,
      channelOverride: node.getChannel(),
    });
    return { node, vm, migration, storage, ha };
  }
}

/** Takes a channel out of use: closed now when idle, else when its last call ends. */
function retire(entry: ChannelEntry): void {
  entry.retired = true;
  if (entry.users === 0) closeClients(entry.clients);
}

function closeClients(clients: Clients): void {
  clients.ha.close();
  clients.storage.close();
  clients.migration.close();
  clients.vm.close();
  clients.node.close();
}

function waitForReady(
  client: VmServiceClient,
  deadline: Date,
  endpoint: string,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    client.waitForReady(deadline, (error) => {
      if (!error) return resolve();
      reject(
        new AgentError(
          ErrorCode.RemoteUnreachable,
          `could not connect to ${endpoint} within ${timeoutMs} ms`,
          endpoint,
          { cause: error },
        ),
      );
    });
  });
}

/** The presented chain, leaf first, as Node links it through issuerCertificate. */
function chainOf(leaf: DetailedPeerCertificate): PresentedCertificate[] {
  const chain: PresentedCertificate[] = [];
  const seen = new Set<string>();
  let current: DetailedPeerCertificate | undefined = leaf;
  while (current && current.raw && chain.length < 10) {
    const fingerprint = fingerprintSha256(current.raw);
    if (seen.has(fingerprint)) break;
    seen.add(fingerprint);
    chain.push({
      subject: formatName(current.subject),
      issuer: formatName(current.issuer),
      fingerprintSha256: fingerprint,
      isCa: current.ca,
      notBefore: new Date(current.valid_from).toISOString(),
      notAfter: new Date(current.valid_to).toISOString(),
      pem: derToPem(current.raw),
    });
    current = current.issuerCertificate;
  }
  return chain;
}

function formatName(name: Record<string, string | string[] | undefined> | undefined): string {
  return Object.entries(name ?? {})
    .filter((entry): entry is [string, string | string[]] => entry[1] !== undefined)
    .map(([key, value]) => `${key}=${Array.isArray(value) ? value.join('+') : value}`)
    .join(', ');
}
