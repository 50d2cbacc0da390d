import type { RpcMetrics } from '@debvisor/common';
import type { NodeEntry } from '../registry/node.schema';
import {
  debvisorV1,
  type ConsoleFrame,
  type ConsoleFrame__Output,
  type MigrationProgress__Output,
  type MigrationServiceDefinition,
  type RenewCertificateResponse__Output,
  type StorageServiceDefinition,
  type VmServiceDefinition,
} from '@debvisor/proto';
import {
  Client,
  Metadata,
  status,
  type ClientDuplexStream,
  type ClientReadableStream,
  type MethodDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import type { TlsMaterial } from '../config/tls-material';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { FORWARD_METADATA, type CallContext } from './call-context';
import { errorCodeOf } from './error-status';
import { peerChannelCredentials, peerChannelOptions } from './tls-credentials';

export interface PeerTarget {
  nodeId: string;
  endpoint: string;
}

/** A registered node, as a peer to call. */
export function peerTargetOf(node: NodeEntry): PeerTarget {
  return { nodeId: node.info.nodeId, endpoint: node.info.agentEndpoint };
}

type VmMethod = Exclude<keyof VmServiceDefinition, 'Console'>;
type MigrationUnary = 'PrepareMigration' | 'CancelMigration' | 'GetMigration' | 'FailoverVm';
/** A VM's storage calls, answered by the VM's node. */
type StorageVmMethod = 'SnapshotVm' | 'ListVmSnapshots' | 'DeleteVmSnapshot' | 'RollbackVm';
type Definitions = VmServiceDefinition &
  Pick<MigrationServiceDefinition, MigrationUnary | 'MigrateVm'> &
  Pick<StorageServiceDefinition, StorageVmMethod>;
type RequestOf<M extends keyof Definitions> = Definitions[M] extends {
  requestSerialize: (value: infer R) => Buffer;
}
  ? R
  : never;
type ResponseOf<M extends keyof Definitions> = Definitions[M] extends {
  responseDeserialize: (bytes: Buffer) => infer R;
}
  ? R
  : never;

/** Statuses that are a peer's answer to the request itself; anything else means it did not answer. */
const ANSWERS = new Set([
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.ALREADY_EXISTS,
  status.FAILED_PRECONDITION,
  status.PERMISSION_DENIED,
  status.UNIMPLEMENTED,
]);

/**
 * Calls to other agents of the cluster, over mutual TLS with this agent's own certificate. The
 * original caller's API key id travels in metadata; the peer looks the key up again.
 */
export class PeerClientRepository {
  private readonly clients = new Map<string, Client>();
  private retired: Client[] = [];

  constructor(
    private readonly tls: TlsMaterial,
    /** Counts peers that did not answer (backend_connection_errors_total{backend_service="agent"}). */
    private readonly metrics?: Pick<RpcMetrics, 'backendConnectionError'>,
  ) {}

  vmCall<M extends VmMethod>(
    target: PeerTarget,
    method: M,
    request: RequestOf<M>,
    context: CallContext,
    timeoutMs: number,
  ): Promise<ResponseOf<M>> {
    return this.unary(
      debvisorV1().VmService.service[method] as unknown as MethodDefinition<
        RequestOf<M>,
        ResponseOf<M>
      >,
      target,
      request,
      context,
      timeoutMs,
    );
  }

  migrationCall<M extends MigrationUnary>(
    target: PeerTarget,
    method: M,
    request: RequestOf<M>,
    context: CallContext,
    timeoutMs: number,
  ): Promise<ResponseOf<M>> {
    return this.unary(
      debvisorV1().MigrationService.service[method] as unknown as MethodDefinition<
        RequestOf<M>,
        ResponseOf<M>
      >,
      target,
      request,
      context,
      timeoutMs,
    );
  }

  storageCall<M extends StorageVmMethod>(
    target: PeerTarget,
    method: M,
    request: RequestOf<M>,
    context: CallContext,
    timeoutMs: number,
  ): Promise<ResponseOf<M>> {
    return this.unary(
      debvisorV1().StorageService.service[method] as unknown as MethodDefinition<
        RequestOf<M>,
        ResponseOf<M>
      >,
      target,
      request,
      context,
      timeoutMs,
    );
  }

  /** MigrateVm on the node that runs the VM: its progress stream, as it comes. */
  migrateStream(
    target: PeerTarget,
    request: RequestOf<'MigrateVm'>,
    context: CallContext,
  ): ClientReadableStream<MigrationProgress__Output> {
    const definition = debvisorV1().MigrationService.service.MigrateVm;
    return this.client(target).makeServerStreamRequest(
      definition.path,
      definition.requestSerialize as (value: RequestOf<'MigrateVm'>) => Buffer,
      definition.responseDeserialize as (bytes: Buffer) => MigrationProgress__Output,
      request,
      forwardMetadata(context),
    );
  }

  /** VmService.Console on the node that runs the VM: the forwarded console stream (the caller writes `open` first). */
  consoleStream(
    target: PeerTarget,
    context: CallContext,
  ): ClientDuplexStream<ConsoleFrame, ConsoleFrame__Output> {
    const definition = debvisorV1().VmService.service.Console;
    return this.client(target).makeBidiStreamRequest(
      definition.path,
      definition.requestSerialize as (value: ConsoleFrame) => Buffer,
      definition.responseDeserialize as (bytes: Buffer) => ConsoleFrame__Output,
      forwardMetadata(context),
    );
  }

  /** An error of a forwarded stream, as this agent reports it. */
  streamError(target: PeerTarget, error: ServiceError): AgentError {
    return toAgentError(target, error);
  }

  private unary<Req, Res>(
    definition: MethodDefinition<Req, Res>,
    target: PeerTarget,
    request: Req,
    context: CallContext,
    timeoutMs: number,
  ): Promise<Res> {
    const client = this.client(target);
    const metadata = forwardMetadata(context);
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize,
        definition.responseDeserialize,
        request,
        metadata,
        { deadline: Date.now() + timeoutMs },
        (error: ServiceError | null, response?: Res) => {
          if (!error) return resolve(response!);
          if (error.code === status.UNAVAILABLE) this.forget(target);
          if (!ANSWERS.has(error.code)) this.metrics?.backendConnectionError('agent');
          reject(toAgentError(target, error));
        },
      );
    });
  }

  close(): void {
    for (const client of [...this.clients.values(), ...this.retired]) client.close();
    this.clients.clear();
    this.retired = [];
  }

  /**
   * After a certificate or trust change: new calls open channels with the new material, calls
   * under way finish on the old channels, which close at the next change (or at close()).
   */
  retireChannels(): void {
    for (const client of this.retired) client.close();
    this.retired = [...this.clients.values()];
    this.clients.clear();
  }

  /**
   * RenewCertificate on a peer that holds the cluster CA key: authenticated by this agent's
   * certificate alone (no forwarded caller).
   */
  renewCertificate(
    target: PeerTarget,
    csrPem: string,
    timeoutMs: number,
  ): Promise<RenewCertificateResponse__Output> {
    const definition = debvisorV1().NodeService.service.RenewCertificate;
    const client = this.client(target);
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize,
        definition.responseDeserialize as (bytes: Buffer) => RenewCertificateResponse__Output,
        { csrPem },
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error: ServiceError | null, response?: RenewCertificateResponse__Output) =>
          error ? reject(toAgentError(target, error)) : resolve(response!),
      );
    });
  }

  private client(target: PeerTarget): Client {
    const key = `${target.nodeId}@${target.endpoint}`;
    let client = this.clients.get(key);
    if (!client) {
      client = new Client(target.endpoint, peerChannelCredentials(this.tls, target.nodeId), {
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 2_000,
        ...peerChannelOptions(target.nodeId),
      });
      this.clients.set(key, client);
    }
    return client;
  }

  /** Drops a channel to an unreachable peer, so that the next call connects afresh. */
  private forget(target: PeerTarget): void {
    const key = `${target.nodeId}@${target.endpoint}`;
    this.clients.get(key)?.close();
    this.clients.delete(key);
  }
}

function forwardMetadata(context: CallContext): Metadata {
  const metadata = new Metadata();
  metadata.set(FORWARD_METADATA.principal, context.caller.principal);
  // The callee looks the key up again and applies its rights; without one (the agent acting for
  // itself), the callee allows only AGENT_SELF_PERMISSIONS.
  if (context.caller.keyId) metadata.set(FORWARD_METADATA.keyId, context.caller.keyId);
  else metadata.set(FORWARD_METADATA.permissions, context.caller.permissions.join(','));
  metadata.set(FORWARD_METADATA.traceId, context.traceId);
  return metadata;
}

function toAgentError(target: PeerTarget, error: ServiceError): AgentError {
  if (ANSWERS.has(error.code)) return new AgentError(errorCodeOf(error.code), error.details);
  const code =
    error.code === status.DEADLINE_EXCEEDED ? ErrorCode.DeadlineExceeded : ErrorCode.Unavailable;
  return new AgentError(
    code,
    `node ${target.nodeId} (${target.endpoint}) did not answer: ${status[error.code]}: ${error.details}`.slice(
      0,
      500,
    ),
  );
}
