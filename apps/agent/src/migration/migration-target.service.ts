import type { MigrationProgress, PrepareMigrationResponse } from '@debvisor/proto';
import type { X509Certificate } from 'node:crypto';
import { X509Certificate as Certificate } from 'node:crypto';
import type {
  HypervisorDriver,
  MigrationAddress,
  VmDefinition,
} from '../drivers/hypervisor.driver';
import type { ImageRef, StorageDriver } from '../drivers/storage.driver';
import { agentNodeIdOf } from '../rpc/peer-identity';
import type { MutualTls13ServerCredentials } from '../rpc/tls-credentials';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { VmDiskLocks } from '../vms/vm-disk-locks';
import type { VmIndexRepository } from '../vms/vm-index.repository';
import type { VmService } from '../vms/vm.service';
import { pskOf, RESUME_PREFIX, ResumeCredential, type MigrationCookies } from './migration-cookies';
import {
  allPass,
  mappedSpec,
  targetChecks,
  type PreflightCheck,
  type TargetDisk,
} from './migration-preflight';
import type { CallContext } from '../rpc/call-context';
import type { PeerClusters } from '../trust/peer-clusters.service';
import type { RevokedNodes } from '../trust/revoked-nodes.service';
import type { PrepareMigrationInput } from './migration.requests';
import type { MigrationSocketRepository } from './migration-socket.repository';
import { finalSnapshotsSchema, type MirroredDisks } from './mirrored-disks';
import type { Socket } from 'node:net';
import { TunnelBridge, type Frame, type FrameStream } from './tunnel-bridge';
import { DataTokens, type DataHeader } from './tunnel-data';
import { MigrationTimeline } from './migration-timeline';

/** Extra time a reservation waits beyond its cookie's TTL before it is released. */
const RESERVATION_GRACE_MS = 5_000;
/** How long the outcome of an ended reservation is remembered for GetMigration. */
const OUTCOME_TTL_MS = 10 * 60_000;
/** How long a data channel waits for the channel before it to reach the incoming QEMU. */
const CHANNEL_ORDER_TIMEOUT_MS = 30_000;

type ReservationState = 'reserved' | 'receiving' | 'committed' | 'aborted';

export interface TunnelOpening {
  cookie: string;
  vmUuid: string;
  migrationId: string;
  controlOnly: boolean;
  /** QEMU's bytes come over data connections (one per channel), not through the tunnel stream. */
  dataConnections?: boolean;
}

/** A reservation's data channels: one-time tokens, the source they belong to, and their sockets. */
interface DataChannels {
  tokens: DataTokens;
  sourceNode: string;
  /** Channel i reaches QEMU once channel i - 1 did: QEMU 7.2 takes its first connection as the main one. */
  connected: Promise<void>[];
  markConnected: (() => void)[];
  sockets: Set<Socket>;
}

export interface Reservation {
  migrationId: string;
  spec: VmDefinition;
  online: boolean;
  address: MigrationAddress | undefined;
  /** The source cluster's CA when it is another cluster. */
  peerCa: X509Certificate | undefined;
  /** Across clusters: the disks' mirrors here that hold the source's final mirror snapshot. */
  synced?: ImageRef[];
  state: ReservationState;
  /** QEMU multifd channels the incoming side takes besides the main one. */
  multifdChannels: number;
  data?: DataChannels;
  /** Post-copy allowed: the source gets a resume credential before 'ready'. */
  postcopy: boolean;
  /** Post-copy: the one resume credential good now (see ResumeCredential); undefined once the source said 'done'. */
  resume?: ResumeCredential;
  /** A credential issued and not yet handed to the source (sent first on its control stream). */
  pendingCredential?: string;
  /** A resumption claimed: its control stream recovers the incoming QEMU and hands out fresh data tokens. */
  resuming?: boolean;
  /** The source said the migration completed: nothing more to resume. */
  finished?: boolean;
  /** A post-copy commit under way: a broken link must not abort it (the source resumes it). */
  committingPostcopy?: boolean;
  timer: NodeJS.Timeout | undefined;
  message: string;
  /** Committed and the VM index names this node (or could not be written: registration repairs it). */
  indexed?: boolean;
  endedAt?: number;
  /** When each step happened here (logged when the reservation ends). */
  timeline: MigrationTimeline;
}

export interface MigrationTargetDeps {
  nodeId: string;
  /** The host QEMU listens on for the direct transport (the advertised host). */
  advertiseHost: string;
  advertise: string;
  clusterCa: X509Certificate;
  clusterCaPem: string;
  /** Every cluster CA trusted now (two during a CA rotation); default: clusterCa alone. */
  clusterCas?: () => readonly X509Certificate[];
  cookieTtlMs: number;
  driver: HypervisorDriver;
  storage: Pick<StorageDriver, 'listImages' | 'mirrorStatus' | 'imageHolder'>;
  /** The target cluster's VMs with their disks (every node asked with the caller's rights). */
  clusterVms: (context: CallContext) => Promise<{ vms: ClusterVm[]; unreachableNodes: string[] }>;
  /** migration.maxMirrorLagSeconds */
  maxMirrorLagSeconds: number;
  index: Pick<VmIndexRepository, 'get' | 'put' | 'list' | 'removeIfOwnedBy'>;
  cookies: MigrationCookies;
  credentials: Pick<MutualTls13ServerCredentials, 'trustPeerCa' | 'forgetPeerCa'>;
  sockets: Pick<MigrationSocketRepository, 'connect'>;
  /** Taken before the VM runs here: refused when another VM holds one of its disks. */
  disks: Pick<VmDiskLocks, 'lock' | 'unlock'>;
  /** From another cluster: the disks' mirrors here promoted once the source's demotion arrived. */
  mirrored: Pick<MirroredDisks, 'acquire' | 'waitReplayed' | 'giveBack'>;
  /** The peer clusters the operator trusts: the only other clusters a VM may come from. */
  trustedPeers: Pick<PeerClusters, 'trustedFor'>;
  /** The node deny list: a revoked node's tunnel is refused. */
  revoked: Pick<RevokedNodes, 'isRevoked'>;
  /** migration.multifdChannels: offered to pre-copy migrations into QEMU (0: none). */
  multifdChannels?: number;
  clock: Clock;
  logger: Logger;
}

/** A VM of the target cluster and the images it has as disks. */
export interface ClusterVm {
  uuid: string;
  name: string;
  disks: { pool: string; image: string }[];
  vcpus?: number;
  memoryBytes?: number;
}

/**
 * The cluster's VMs with their disks, through VmService's listing of every alive node: asked as
 * the caller (not as a forwarded call, which would answer this node's VMs only).
 */
export function clusterVmsOf(vms: Pick<VmService, 'list'>): MigrationTargetDeps['clusterVms'] {
  return async (context) => {
    const answer = await vms.list('', { ...context, forwarded: false });
    const cluster = (answer.vms ?? []).flatMap((vm) =>
      vm.spec
        ? [
            {
              uuid: vm.spec.uuid ?? '',
              name: vm.spec.name ?? '',
              disks: (vm.spec.disks ?? []).map((d) => ({
                pool: d.pool ?? '',
                image: d.image ?? '',
              })),
              vcpus: vm.spec.vcpus ?? 0,
              memoryBytes: Number(vm.spec.memoryBytes ?? 0),
            },
          ]
        : [],
    );
    return { vms: cluster, unreachableNodes: Object.keys(answer.unreachableNodes ?? {}) };
  };
}

/**
 * Within the cluster: the VM asked for must be the one the source node has — indexed there, with
 * the same name, size and disks — so that nobody can define a VM here on another VM's disks.
 */
export function sourceSpecCheck(
  spec: VmDefinition,
  sourceNodeId: string,
  indexedOn: string | undefined,
  clusterVms: readonly ClusterVm[],
): PreflightCheck {
  const fail = (reason: string): PreflightCheck => ({
    name: 'source-spec',
    result: 'fail',
    reason,
  });
  if (sourceNodeId === '' || indexedOn !== sourceNodeId)
    return fail(
      `VM ${spec.uuid} is not on node ${sourceNodeId || '(none named)'} of this cluster; only a VM the source has can move`,
    );
  const vm = clusterVms.find((one) => one.uuid === spec.uuid);
  if (!vm)
    return fail(`the source node did not list VM ${spec.uuid}; cannot confirm its definition`);
  const disks = (list: readonly { pool: string; image: string }[]) =>
    list
      .map((d) => `${d.pool}/${d.image}`)
      .sort()
      .join(',');
  if (
    vm.name !== spec.name ||
    disks(vm.disks) !== disks(spec.disks) ||
    (vm.vcpus !== undefined && vm.vcpus !== spec.vcpus) ||
    (vm.memoryBytes !== undefined && vm.memoryBytes !== spec.memoryBytes)
  )
    return fail(
      `the definition asked for differs from VM ${spec.uuid} on node ${sourceNodeId} (name, size or disks)`,
    );
  return {
    name: 'source-spec',
    result: 'pass',
    reason: `the definition is that of VM ${spec.name} on node ${sourceNodeId}`,
  };
}

/** Transports each hypervisor driver can receive. */
export function transportsOf(driver: Pick<HypervisorDriver, 'name'>): ('direct' | 'tunnel')[] {
  return driver.name === 'libvirt' ? ['direct'] : ['direct', 'tunnel'];
}

/**
 * The target end of migrations on this node: pre-flight, reservations with an incoming QEMU and a
 * one-time cookie, the tunnel's receiving side, commit and clean-up. A reservation nobody claims
 * within the cookie's TTL is released; a tunnel that ends before the commit aborts the incoming VM.
 */
export class MigrationTargetService {
  private readonly reservations = new Map<string, Reservation>();

  constructor(private readonly deps: MigrationTargetDeps) {}

  async checks(input: PrepareMigrationInput, context: CallContext): Promise<PreflightCheck[]> {
    const { driver, storage, index, nodeId } = this.deps;
    const spec = input.vm;
    const mapped = mappedSpec(spec, input.storageMap, input.networkMap);
    const [facts, usage, local, here, location, vmIndex, cluster] = await Promise.all([
      driver.facts(),
      driver.usage(),
      driver.list(),
      driver.get(spec.uuid),
      index.get(spec.uuid),
      index.list(),
      // An agent acting as itself (the HA coordinator's drain) cannot be spoken for towards a third
      // node: the cluster is listed as this agent, for reading.
      this.deps.clusterVms(
        context.caller.keyId === undefined
          ? {
              ...context,
              caller: { principal: `agent:${nodeId}`, permissions: ['vm:instance:read'] },
            }
          : context,
      ),
    ]);
    const images = new Set<string>();
    for (const pool of new Set(mapped.disks.map((disk) => disk.pool))) {
      for (const image of await storage.listImages(pool)) images.add(`${pool}/${image.image}`);
    }
    const disks = new Map<string, TargetDisk>();
    for (const { pool, image } of mapped.disks) {
      const name = `${pool}/${image}`;
      if (!images.has(name) || disks.has(name)) continue;
      const [mirror, holder] = await Promise.all([
        storage.mirrorStatus({ pool, image }).catch(() => undefined),
        storage.imageHolder({ pool, image }).catch(() => undefined),
      ]);
      const usedBy = cluster.vms
        .filter((vm) => vm.disks.some((disk) => disk.pool === pool && disk.image === image))
        .map(({ uuid, name: vmName }) => ({ uuid, name: vmName }));
      disks.set(name, { mirror, holder, usedBy });
    }
    const vmNames = new Map([...vmIndex].map(([uuid, entry]) => [entry.name, uuid]));
    const reserved = [...this.reservations.values()].some(
      (r) => r.spec.uuid === spec.uuid && (r.state === 'reserved' || r.state === 'receiving'),
    );
    const checks = targetChecks(
      {
        spec,
        online: input.online,
        transport: input.transport,
        sourceNodeId: input.sourceNodeId,
        sameCluster: input.sourceCaPem === '',
        storageMap: input.storageMap,
        networkMap: input.networkMap,
        source: { model: input.sourceCpuModel, flags: input.sourceCpuFlags },
        sourceDisks: input.sourceDisks,
      },
      {
        nodeId,
        facts,
        usage,
        committedMemoryBytes: local
          .filter((vm) => vm.runtime.state !== 'stopped')
          .reduce((sum, vm) => sum + vm.spec.memoryBytes, 0),
        indexedOn: location?.nodeId,
        presentHere: here !== undefined,
        images,
        transports: transportsOf(driver),
        disks,
        vmNames,
        unreachableNodes: cluster.unreachableNodes,
        maxMirrorLagSeconds: this.deps.maxMirrorLagSeconds,
      },
    );
    checks.push(
      input.sourceCaPem === ''
        ? sourceSpecCheck(spec, input.sourceNodeId, location?.nodeId, cluster.vms)
        : await this.peerCheck(input.sourceCaPem),
    );
    if (reserved)
      checks.push({
        name: 'vm-lock',
        result: 'fail',
        reason: `another migration of VM ${spec.uuid} to node ${nodeId} is under way`,
      });
    return checks;
  }

  /** Across clusters: the source's CA must be one of a peer cluster the operator trusts here. */
  private async peerCheck(sourceCaPem: string): Promise<PreflightCheck> {
    const peer = await this.deps.trustedPeers.trustedFor(sourceCaPem);
    return peer
      ? {
          name: 'source-cluster',
          result: 'pass',
          reason: `the source is trusted peer cluster ${peer.clusterId}`,
        }
      : {
          name: 'source-cluster',
          result: 'fail',
          reason:
            "the source CA is not a trusted peer cluster's here (debvisor-agent-admin peer trust); refusing to receive the VM",
        };
  }

  /** Pre-flight, then (unless check_only) the reservation: incoming side prepared, cookie issued. */
  async prepare(
    input: PrepareMigrationInput,
    context: CallContext,
  ): Promise<PrepareMigrationResponse> {
    const timeline = new MigrationTimeline('target: PrepareMigration');
    const checks = await this.checks(input, context);
    timeline.mark('target: checks done');
    const base = {
      checks,
      ok: allPass(checks),
      nodeId: this.deps.nodeId,
      caPem: this.deps.clusterCaPem,
    };
    if (input.checkOnly || !base.ok) return base;
    const { migrationId } = input;
    // An aborted reservation is kept only to answer its outcome: the same migration may be prepared
    // again (a manager that restarted mid-move releases its reservation, then asks once more).
    const earlier = this.reservations.get(migrationId);
    if (earlier && earlier.state !== 'aborted') {
      throw new AgentError(
        ErrorCode.AlreadyExists,
        `migration ${migrationId} is already prepared on node ${this.deps.nodeId}`,
      );
    }
    const transport = input.transport === '' ? 'tunnel' : input.transport;
    let peerCa: X509Certificate | undefined;
    if (input.sourceCaPem !== '') {
      try {
        peerCa = new Certificate(input.sourceCaPem);
      } catch {
        throw new AgentError(
          ErrorCode.InvalidArgument,
          'invalid request: source_ca_pem: not a readable certificate',
        );
      }
      if (!peerCa.ca)
        throw new AgentError(
          ErrorCode.InvalidArgument,
          'invalid request: source_ca_pem: not a CA certificate',
        );
    }
    const binding = { vmUuid: input.vm.uuid, migrationId };
    const { cookie, expiresAt } = this.deps.cookies.issue(binding, this.deps.cookieTtlMs);
    const spec = mappedSpec(input.vm, input.storageMap, input.networkMap);
    const reservation: Reservation = {
      migrationId,
      spec,
      online: input.online,
      address: undefined,
      peerCa,
      state: 'reserved',
      multifdChannels:
        input.online && !input.allowPostcopy && this.deps.driver.name === 'qemu'
          ? (this.deps.multifdChannels ?? 0)
          : 0,
      postcopy: input.online && input.allowPostcopy,
      timer: undefined,
      message: 'waiting for the source',
      timeline,
    };
    this.reservations.set(migrationId, reservation);
    try {
      if (peerCa) this.deps.credentials.trustPeerCa(migrationId, input.sourceCaPem);
      if (input.online) {
        reservation.address = await this.deps.driver.prepareIncoming(spec, {
          migrationId,
          transport,
          listenHost: this.deps.advertiseHost,
          psk: transport === 'direct' ? pskOf(cookie, binding) : undefined,
          allowPostcopy: input.allowPostcopy,
          multifdChannels: reservation.multifdChannels,
        });
      }
    } catch (error) {
      await this.release(reservation, 'aborted', 'the incoming side could not be prepared');
      throw error;
    }
    timeline.mark('target: incoming side prepared');
    reservation.timer = setTimeout(() => {
      if (reservation.state === 'reserved')
        void this.release(reservation, 'aborted', 'the cookie expired before the source connected');
    }, this.deps.cookieTtlMs + RESERVATION_GRACE_MS);
    reservation.timer.unref();
    this.deps.logger.info(
      { migrationId, vm: spec.uuid, transport, online: input.online },
      'migration target prepared',
    ); // never the cookie
    return {
      ...base,
      endpoint: this.deps.advertise,
      dataEndpoint: dataEndpointOf(reservation.address, transport),
      cookie,
      cookieExpiresAt: expiresAt.toISOString(),
    };
  }

  /**
   * Authenticates a tunnel: the first frame's cookie (used up here) and the peer's agent
   * certificate from the cluster pinned for this migration. Answers the source node's id.
   */
  async claim(
    opening: TunnelOpening,
    peerCertificate: Buffer | undefined,
  ): Promise<{ sourceNode: string; reservation: Reservation }> {
    if (opening.cookie.startsWith(RESUME_PREFIX)) return this.claimResume(opening, peerCertificate);
    this.deps.cookies.claim(opening.cookie, {
      vmUuid: opening.vmUuid,
      migrationId: opening.migrationId,
    });
    const reservation = this.reservations.get(opening.migrationId);
    if (!reservation || reservation.state !== 'reserved')
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `migration ${opening.migrationId} is not waiting for its source on node ${this.deps.nodeId}`,
      );
    const cas = reservation.peerCa
      ? [reservation.peerCa]
      : (this.deps.clusterCas?.() ?? [this.deps.clusterCa]);
    const sourceNode = cas
      .map((ca) => agentNodeIdOf(peerCertificate, ca))
      .find((id) => id !== undefined);
    if (sourceNode && !reservation.peerCa && this.deps.revoked.isRevoked(sourceNode)) {
      await this.release(reservation, 'aborted', `node ${sourceNode} is revoked`);
      throw new AgentError(
        ErrorCode.PermissionDenied,
        `node ${sourceNode} is revoked in this cluster`,
      );
    }
    if (!sourceNode) {
      await this.release(
        reservation,
        'aborted',
        'the tunnel came from an agent of another cluster than the one pinned',
      );
      throw new AgentError(
        ErrorCode.PermissionDenied,
        'the tunnel must come from an agent certificate of the source cluster pinned for this migration',
      );
    }
    if (opening.dataConnections && !opening.controlOnly) {
      const channels = 1 + reservation.multifdChannels;
      const markConnected: (() => void)[] = [];
      const connected = Array.from(
        { length: channels },
        (_, i) => new Promise<void>((resolve) => (markConnected[i] = resolve)),
      );
      reservation.data = {
        tokens: new DataTokens(channels),
        sourceNode,
        connected,
        markConnected,
        sockets: new Set(),
      };
    } else if (!opening.controlOnly && reservation.multifdChannels > 0) {
      await this.release(reservation, 'aborted', 'the source cannot open multifd channels');
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        'this target takes QEMU multifd channels over data connections; the source agent is too old for them',
      );
    }
    reservation.state = 'receiving';
    reservation.timeline.mark('target: tunnel claimed');
    reservation.message = `receiving from node ${sourceNode}`;
    clearTimeout(reservation.timer);
    if (reservation.postcopy && reservation.data && peerCertificate)
      this.issueResume(reservation, peerCertificate);
    return { sourceNode, reservation };
  }

  /**
   * A source resuming a post-copy migration whose link broke: its one-time resume credential
   * (used up here), from the same certificate that claimed the cookie, for a migration committed
   * here and not finished. The old data connections are cut (the incoming QEMU pauses, if the
   * break had not reached it) and a fresh credential is issued; the stream then recovers QEMU.
   */
  private claimResume(
    opening: TunnelOpening,
    peerCertificate: Buffer | undefined,
  ): { sourceNode: string; reservation: Reservation } {
    const reservation = this.reservations.get(opening.migrationId);
    const refusal = reservation?.resume
      ? reservation.resume.refusal(
          opening.cookie,
          { vmUuid: opening.vmUuid, migrationId: opening.migrationId },
          peerCertificate,
        )
      : { code: ErrorCode.PermissionDenied, reason: 'unknown or used resume credential' };
    if (refusal || !reservation?.data || !peerCertificate) {
      this.deps.logger.warn(
        { migrationId: opening.migrationId, reason: refusal?.reason },
        'post-copy resumption refused',
      );
      throw new AgentError(
        refusal?.code ?? ErrorCode.PermissionDenied,
        refusal?.reason ?? 'unknown or used resume credential',
      );
    }
    if (reservation.state !== 'committed' || reservation.finished)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `migration ${opening.migrationId} has no paused post-copy to resume on node ${this.deps.nodeId}`,
      );
    reservation.resume = undefined; // used up: a replay finds nothing
    const data = reservation.data;
    for (const socket of data.sockets) socket.destroy();
    const markConnected: (() => void)[] = [];
    reservation.data = {
      tokens: new DataTokens(1),
      sourceNode: data.sourceNode,
      connected: [new Promise<void>((resolve) => (markConnected[0] = resolve))],
      markConnected,
      sockets: new Set(),
    };
    reservation.resuming = true;
    this.issueResume(reservation, peerCertificate);
    return { sourceNode: data.sourceNode, reservation };
  }

  /** A fresh resume credential for the source of `reservation`, sent first on its control stream. */
  private issueResume(reservation: Reservation, peerCertificate: Buffer): void {
    const { credential, record } = ResumeCredential.issue(
      { vmUuid: reservation.spec.uuid, migrationId: reservation.migrationId },
      peerCertificate,
    );
    reservation.resume = record;
    reservation.pendingCredential = credential;
  }

  /** The link of a committed post-copy migration broke: both QEMUs pause and keep their pages. */
  private linkLost(reservation: Reservation, sourceNode: string, log: Logger): void {
    if (reservation.state !== 'committed' || reservation.finished || !reservation.resume) return;
    reservation.message = `paused: the link to node ${sourceNode} was lost during post-copy; waiting for the source to resume it`;
    log.warn('post-copy link lost; waiting for the source to resume it');
  }

  /** The tunnel's receiving side: bytes go to the incoming QEMU; control words commit or abort. Resolves when the tunnel ends. */
  async carry(
    stream: FrameStream & { end(): void },
    reservation: Reservation,
    sourceNode: string,
    controlOnly: boolean,
  ): Promise<void> {
    // The data channels' tokens and QEMU's multifd channel count go to the source in 'ready'.
    const ready = JSON.stringify({
      multifdChannels: reservation.multifdChannels,
      ...(reservation.data ? { dataTokens: reservation.data.tokens.toWire() } : {}),
    });
    const log = this.deps.logger.child({
      migrationId: reservation.migrationId,
      vm: reservation.spec.uuid,
      sourceNode,
    });
    await new Promise<void>((resolve) => {
      const bridge: TunnelBridge = new TunnelBridge(
        stream,
        (frame: Frame) => void this.onControl(reservation, bridge, frame, log),
        (error) => {
          if (reservation.state === 'receiving' && !reservation.committingPostcopy) {
            log.warn(
              { err: error },
              'migration tunnel closed before the commit; aborting the incoming VM',
            );
            void this.release(reservation, 'aborted', 'the source went away before the switchover');
          } else this.linkLost(reservation, sourceNode, log);
          resolve();
        },
      );
      // The resume credential first: a source that gets nothing more still holds the next one.
      if (reservation.pendingCredential) {
        bridge.send('credential', reservation.pendingCredential);
        reservation.pendingCredential = undefined;
      }
      if (reservation.resuming) {
        reservation.resuming = false;
        this.resumeIncoming(reservation, sourceNode, log).then(
          (tokens) =>
            bridge.send('ready', JSON.stringify({ multifdChannels: 0, dataTokens: tokens })),
          (error: unknown) => {
            log.error({ err: error }, 'cannot resume the incoming post-copy migration');
            bridge.send(
              'error',
              error instanceof AgentError
                ? error.message
                : 'the target could not resume its incoming VM',
            );
            bridge.close(error as Error);
          },
        );
        return;
      }
      const carryBytes =
        !controlOnly &&
        !reservation.data &&
        reservation.online &&
        reservation.address?.kind === 'unix';
      const attached = carryBytes
        ? this.deps.sockets.connect(reservation.address!).then((socket) => bridge.attach(socket))
        : Promise.resolve();
      attached.then(
        () => {
          bridge.send('ready', ready);
          reservation.timeline.mark('target: ready sent');
        },
        (error: unknown) => {
          log.error({ err: error }, 'cannot reach the incoming QEMU');
          bridge.send('error', 'the target could not reach its incoming VM');
          bridge.close(error as Error);
        },
      );
    });
    stream.end();
  }

  /**
   * A resumption's target side: QEMU listens again (migrate-recover, on a fresh socket; the
   * driver pauses an incoming side the break has not reached yet) and the data channel's fresh
   * one-time token is answered for the source's 'ready'.
   */
  private async resumeIncoming(
    reservation: Reservation,
    sourceNode: string,
    log: Logger,
  ): Promise<string[]> {
    if (!this.deps.driver.recoverIncoming)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the ${this.deps.driver.name} driver cannot resume a post-copy migration`,
      );
    reservation.message = `resuming the post-copy migration from node ${sourceNode}`;
    reservation.address = await this.deps.driver.recoverIncoming(reservation.spec.uuid);
    reservation.message = `running on node ${this.deps.nodeId} (post-copy resumed)`;
    log.info('post-copy migration resuming');
    return reservation.data!.tokens.toWire();
  }

  /**
   * A data connection's header: its token must be one this target handed out for a migration that
   * is receiving (used up here, whatever follows), and its certificate the same source node's as
   * the migration's control stream. Answers the incoming QEMU's end of the channel, connected in
   * channel order.
   */
  async acceptData(header: DataHeader, peerCertificate: Buffer | undefined): Promise<Socket> {
    const reservation = [...this.reservations.values()].find((r) =>
      r.data?.tokens.claim(header.index, header.token),
    );
    const data = reservation?.data;
    if (!reservation || !data)
      throw new AgentError(
        ErrorCode.PermissionDenied,
        'unknown or used data channel token; each is good for one connection',
      );
    if (!receivingOrResumed(reservation))
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `migration ${reservation.migrationId} is not receiving`,
      );
    const cas = reservation.peerCa
      ? [reservation.peerCa]
      : (this.deps.clusterCas?.() ?? [this.deps.clusterCa]);
    const node = cas.map((ca) => agentNodeIdOf(peerCertificate, ca)).find((id) => id !== undefined);
    if (node !== data.sourceNode)
      throw new AgentError(
        ErrorCode.PermissionDenied,
        'a data channel must come from the agent certificate that opened the migration',
      );
    if (header.index > 0)
      await withTimeout(
        data.connected[header.index - 1]!,
        CHANNEL_ORDER_TIMEOUT_MS,
        `data channel ${header.index - 1} did not arrive`,
      );
    if (!receivingOrResumed(reservation) || reservation.address?.kind !== 'unix')
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `migration ${reservation.migrationId} is not receiving`,
      );
    const socket = await this.deps.sockets.connect(reservation.address);
    data.sockets.add(socket);
    socket.once('close', () => data.sockets.delete(socket));
    data.markConnected[header.index]!();
    reservation.timeline.mark(`target: data channel ${header.index} connected`);
    return socket;
  }

  private async onControl(
    reservation: Reservation,
    bridge: TunnelBridge,
    frame: Frame,
    log: Logger,
  ): Promise<void> {
    if (frame.control === 'abort') {
      await this.release(
        reservation,
        'aborted',
        frame.message || 'the source aborted the migration',
      );
      bridge.close(undefined);
      return;
    }
    if (frame.control === 'sync') {
      await this.syncMirrors(reservation, bridge, frame.message ?? '', log);
      return;
    }
    if (frame.control === 'done' && reservation.state === 'committed') {
      // post-copy: every page arrived, nothing more to resume
      reservation.finished = true;
      reservation.resume = undefined;
      reservation.message = `running on node ${this.deps.nodeId}`;
      this.deps.credentials.forgetPeerCa(reservation.migrationId);
      return;
    }
    if (frame.control !== 'commit' || reservation.state !== 'receiving') return;
    reservation.committingPostcopy = reservation.postcopy && reservation.data !== undefined;
    reservation.timeline.mark('target: commit received');
    let promoted: ImageRef[] = [];
    try {
      const { spec } = reservation;
      if (reservation.peerCa) promoted = await this.deps.mirrored.acquire(spec, reservation.synced);
      if (reservation.online) await this.commitHoldingDisks(reservation);
      else await this.deps.driver.define(spec);
      reservation.state = 'committed';
      reservation.timeline.mark('target: VM running');
      reservation.message = `running on node ${this.deps.nodeId}`;
      await this.deps.index
        .put(spec.uuid, { nodeId: this.deps.nodeId, name: spec.name })
        .catch((error: unknown) =>
          log.warn(
            { err: error },
            'could not update the VM index; the next registration repairs it',
          ),
        );
      reservation.indexed = true;
      log.info('migration committed: the VM is now on this node');
      bridge.send('committed');
      reservation.timeline.mark('target: committed sent');
    } catch (error) {
      log.error({ err: error }, 'commit failed; aborting the incoming VM');
      await this.release(reservation, 'aborted', 'the target could not start the VM');
      if ((await this.deps.mirrored.giveBack(promoted)).length > 0) {
        // Primary here and not demotable: the source must not take its images back (both would be
        // primary). No answer: the source keeps its VM paused and says the outcome is unknown.
        bridge.close(undefined);
        return;
      }
      bridge.send(
        'error',
        error instanceof AgentError ? error.message : 'the target could not start the VM',
      );
      bridge.close(undefined);
      return;
    }
    // The source ends the tunnel: with post-copy, pages still flow through it after the commit,
    // and a broken link is resumed through the peer CA pinned for the migration (dropped at 'done').
    await this.end(reservation, !reservation.resume);
  }

  /**
   * From another cluster, the VM paused at the source: waits until the mirrors here hold the
   * source's final mirror snapshot of each disk, telling the source how far they are ('syncing'),
   * then answers 'synced'. When they do not in time, the incoming VM is given up and the source
   * told why: nothing was demoted or promoted yet, the VM resumes at the source.
   */
  private async syncMirrors(
    reservation: Reservation,
    bridge: TunnelBridge,
    message: string,
    log: Logger,
  ): Promise<void> {
    if (reservation.state !== 'receiving') return;
    try {
      if (!reservation.peerCa || !reservation.online)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          'disk mirrors are synced at the switchover of live migrations from another cluster only',
        );
      let snapshots;
      try {
        snapshots = finalSnapshotsSchema.parse(JSON.parse(message));
      } catch {
        throw new AgentError(
          ErrorCode.InvalidArgument,
          'the source sent unreadable final mirror snapshots',
        );
      }
      reservation.synced = await this.deps.mirrored.waitReplayed(
        reservation.spec,
        snapshots,
        (progress) => bridge.send('syncing', progress),
      );
      if (reservation.state === 'receiving') bridge.send('synced');
    } catch (error) {
      log.error(
        { err: error },
        "the disks' mirrors did not get the final mirror snapshot; aborting the incoming VM",
      );
      await this.release(
        reservation,
        'aborted',
        "the disks' mirrors did not get the final mirror snapshot",
      );
      bridge.send(
        'error',
        error instanceof AgentError
          ? error.message
          : "the target could not check its disks' mirrors",
      );
      bridge.close(undefined);
    }
  }

  /**
   * Runs the incoming VM once it holds its disks. Within one cluster the source holds them in the
   * same VM's name, so the locks are already the VM's; from another cluster they are taken here
   * (and given back when the VM cannot run).
   */
  private async commitHoldingDisks(reservation: Reservation): Promise<void> {
    const { spec } = reservation;
    await this.deps.disks.lock(spec);
    try {
      await this.deps.driver.commitIncoming(spec.uuid);
    } catch (error) {
      if (reservation.peerCa) await this.deps.disks.unlock(spec);
      throw error;
    }
  }

  /** Releases a reservation that has not committed (cancel from the manager, expiry, tunnel loss). */
  async cancel(migrationId: string): Promise<boolean> {
    const reservation = this.reservations.get(migrationId);
    if (!reservation) return false;
    if (reservation.state === 'committed')
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `migration ${migrationId} already moved the VM to node ${this.deps.nodeId}`,
      );
    await this.release(reservation, 'aborted', 'cancelled');
    return true;
  }

  /**
   * Is the VM coming to this node: a migration of it prepared or under way here, or committed
   * before the VM index names this node? Until then the index still places it on its source, and
   * HA must not take the copy here for a stale one (ha-node.service.ts).
   */
  arriving(uuid: string): boolean {
    for (const reservation of this.reservations.values())
      if (
        reservation.spec.uuid === uuid &&
        (reservation.state === 'reserved' ||
          reservation.state === 'receiving' ||
          (reservation.state === 'committed' && !reservation.indexed))
      )
        return true;
    return false;
  }

  progress(migrationId: string): MigrationProgress | undefined {
    const reservation = this.reservations.get(migrationId);
    if (!reservation) return undefined;
    const phase = {
      reserved: 'prepared',
      receiving: 'transfer',
      committed: 'completed',
      aborted: 'cancelled',
    }[reservation.state];
    return { phase, message: reservation.message };
  }

  /** Ends every open reservation (agent stop). */
  async close(): Promise<void> {
    for (const reservation of this.reservations.values())
      if (reservation.state === 'reserved' || reservation.state === 'receiving')
        await this.release(reservation, 'aborted', 'the agent stopped');
  }

  private async release(
    reservation: Reservation,
    state: 'aborted',
    message: string,
  ): Promise<void> {
    if (reservation.state === 'aborted' || reservation.state === 'committed') return;
    reservation.state = state;
    reservation.message = message;
    clearTimeout(reservation.timer);
    reservation.data?.tokens.revoke();
    for (const socket of reservation.data?.sockets ?? []) socket.destroy();
    this.deps.cookies.revoke(
      reservation.migrationId,
      `the migration was ${message === 'cancelled' ? 'cancelled' : 'ended'}; its cookie is void`,
    );
    if (reservation.online) {
      await this.deps.driver
        .abortIncoming(reservation.spec.uuid)
        .catch((error: unknown) =>
          this.deps.logger.error(
            { err: error, migrationId: reservation.migrationId },
            'could not clean up the incoming VM',
          ),
        );
      // The node's registration may have indexed the incoming VM meanwhile: a retry's pre-flight
      // would take it for a VM of that id already here. (Within a cluster the entry names the source.)
      const { uuid, name } = reservation.spec;
      await this.deps.index
        .removeIfOwnedBy(uuid, { nodeId: this.deps.nodeId, name })
        .catch((error: unknown) =>
          this.deps.logger.warn(
            { err: error, migrationId: reservation.migrationId },
            'could not update the VM index; the next registration repairs it',
          ),
        );
    }
    this.deps.logger.info(
      { migrationId: reservation.migrationId, vm: reservation.spec.uuid, reason: message },
      'migration target released',
    );
    await this.end(reservation);
  }

  private async end(reservation: Reservation, forgetPeerCa = true): Promise<void> {
    reservation.timeline.mark(`target: ${reservation.state}`);
    reservation.timeline.log(this.deps.logger, {
      migrationId: reservation.migrationId,
      role: 'target',
    });
    if (forgetPeerCa) this.deps.credentials.forgetPeerCa(reservation.migrationId);
    reservation.endedAt = this.deps.clock.now().getTime();
    for (const [id, other] of this.reservations)
      if (
        other.endedAt !== undefined &&
        !other.resume && // a paused post-copy stays resumable for its whole window
        other.endedAt < reservation.endedAt - OUTCOME_TTL_MS
      )
        this.reservations.delete(id);
  }
}

function dataEndpointOf(address: MigrationAddress | undefined, transport: string): string {
  if (transport !== 'direct' || !address) return '';
  if (address.kind === 'tcp')
    return `tcp:${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
  if (address.kind === 'libvirt') return `libvirt:${address.uri}`;
  return '';
}

/** Data channels are taken while receiving, and for a committed post-copy migration being resumed. */
function receivingOrResumed(reservation: Reservation): boolean {
  return (
    reservation.state === 'receiving' ||
    (reservation.state === 'committed' && !reservation.finished && reservation.postcopy)
  );
}

function withTimeout(promise: Promise<void>, ms: number, message: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<void>((_, reject) => {
      timer = setTimeout(
        () => reject(new AgentError(ErrorCode.DeadlineExceeded, `${message} in time`)),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}
