import { splitPemBundle } from '@debvisor/pki';
import type { CaRotationStatus__Output } from '@debvisor/proto';
import { Injectable, type OnModuleInit } from '@nestjs/common';
import type { AgentConnection } from '../agents/agent-connection';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { AgentError } from '../agents/agent-error';
import { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { remoteAclPath } from '../authz/acl-paths';
import type { Caller } from '../authz/caller';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { fingerprintSha256 } from '@debvisor/pki';
import { RemotesService } from '../remotes/remotes.service';
import { TasksService, type TaskContext } from '../tasks/tasks.service';
import type { CaRotationAction, CaRotationStatusView } from './cluster-ca.dto';

/** The cluster permissions of the agents' CA rotation RPCs (apps/agent/src/rpc/permissions.ts). */
const READ_PERMISSION = 'node:ca:read';
const ROTATE_PERMISSION = 'node:ca:rotate';
const TASK_TYPE = 'remote.ca-rotation';
/** How long finish waits for every live node to renew with the new CA (they do within seconds). */
const RENEWAL_WAIT_MS = 600_000;
const POLL_MS = 1_000;

/**
 * A remote cluster's CA rotation driven from the manager: the same begin and finish as
 * `debvisor-agent-admin ca begin|finish` (through an agent that holds the cluster CA key), and in
 * between the manager's own trust for the remote — old and new CA after begin, the new one alone
 * after finish — so that no call to the cluster fails on the way. A task with progress.
 */
@Injectable()
export class ClusterCaService implements OnModuleInit {
  /** What each queued task was asked to do (a task left by a previous process is failed at start). */
  private readonly requests = new Map<string, { action: CaRotationAction; force: boolean }>();

  constructor(
    private readonly tasks: TasksService,
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly audit: AuditService,
    private readonly policy: AccessPolicy,
  ) {}

  onModuleInit(): void {
    this.tasks.registerHandler(TASK_TYPE, {
      run: (context) =>
        this.audit.runAs(ownerPrincipal(context.task.owner), () => this.carryOut(context)),
    });
  }

  async status(remoteId: string): Promise<CaRotationStatusView> {
    const connection = await this.remotes.connectionFor(remoteId, null, READ_PERMISSION);
    const [status, nodes] = await Promise.all([
      this.agents.getCaRotation(connection),
      this.agents.listNodes(connection),
    ]);
    return view(remoteId, connection, status, nodes.nodes);
  }

  async request(
    caller: Caller,
    remoteId: string,
    input: { action: CaRotationAction; force: boolean },
  ): Promise<{ taskId: string }> {
    // Where the remote's keys may go changes: as for a new CA by hand, never through a remote group.
    this.policy.authorizeDirectly(
      caller,
      'remote.trust',
      remoteAclPath(remoteId),
      "rotating a remote's CA",
    );
    // Refused before a task exists when the remote or its credential cannot do it.
    await this.remotes.connectionFor(remoteId, null, ROTATE_PERMISSION);
    const accepted = await this.tasks.enqueue(
      { type: TASK_TYPE, remoteId, vmId: null, owner: caller.display },
      { prepare: async (taskId) => void this.requests.set(taskId, input) },
    );
    this.audit.note({ taskId: accepted.taskId, action: input.action, force: input.force });
    return accepted;
  }

  private async carryOut(context: TaskContext): Promise<void> {
    const remoteId = context.task.remoteId!;
    const request = this.requests.get(context.task.id);
    this.requests.delete(context.task.id);
    if (!request)
      throw new DomainError(ErrorCode.Conflict, 'the request of this task was lost (restart)');
    const { action, force } = request;
    let connection = await this.remotes.connectionFor(remoteId, null, ROTATE_PERMISSION);
    let status = await this.agents.getCaRotation(connection);
    if (action !== 'finish') {
      if (status.rotating) {
        await context.log('a CA rotation is under way already; going on with it');
      } else {
        await context.log(`beginning a CA rotation of remote ${remoteId}`);
        status = await this.onIssuer(connection, (single) => this.agents.beginCaRotation(single));
        await context.log(
          `new cluster CA ${status.issuingFingerprintSha256}: the cluster trusts both CAs; its agents renew within seconds`,
        );
      }
      await this.trust(context, remoteId, status);
      await context.progress(0.2);
      if (action === 'begin') return;
      connection = await this.remotes.connectionFor(remoteId, null, ROTATE_PERMISSION);
    } else if (!status.rotating) {
      throw new DomainError(
        ErrorCode.Conflict,
        `no CA rotation of remote ${remoteId} is under way`,
      );
    }
    if (!force) await this.waitForRenewals(context, connection);
    await context.log(`finishing the CA rotation${force ? ' (forced)' : ''}`);
    status = await this.onIssuer(connection, (single) =>
      this.agents.finishCaRotation(single, force),
    );
    await this.trust(context, remoteId, status);
    await context.log(
      `CA rotation finished: the cluster trusts only ${status.cas[0]?.fingerprintSha256}`,
    );
    await context.progress(1);
  }

  /** The remote's CA bundle becomes the cluster's (fetched again over the stored trust). */
  private async trust(
    context: TaskContext,
    remoteId: string,
    status: CaRotationStatus__Output,
  ): Promise<void> {
    const pems = status.cas.map((ca) => ca.pem);
    if (pems.length === 0) return;
    await this.remotes.replaceClusterCas(remoteId, pems.join(''));
    await context.log(
      `the manager trusts ${pems.length === 1 ? 'the CA' : 'the CAs'} ${status.cas.map((ca) => ca.fingerprintSha256).join(', ')} for remote ${remoteId}`,
    );
  }

  /** Until every live node holds a certificate of the issuing (new) CA; progress 0.2 → 0.8. */
  private async waitForRenewals(context: TaskContext, connection: AgentConnection): Promise<void> {
    const deadline = Date.now() + RENEWAL_WAIT_MS;
    let reported = -1;
    for (;;) {
      let status: CaRotationStatus__Output;
      let registry: Awaited<ReturnType<AgentClientRepository['listNodes']>>;
      try {
        [status, registry] = await Promise.all([
          this.agents.getCaRotation(connection),
          this.agents.listNodes(connection),
        ]);
      } catch (error) {
        // A cluster that does not answer for a moment does not end the wait; its deadline does.
        if (!(error instanceof DomainError) || Date.now() > deadline) throw error;
        await context.log(`waiting: ${error.message}`);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        continue;
      }
      const live = registry.nodes.filter((n) => n.alive).map((n) => n.info?.nodeId ?? '');
      const issuing = issuingOf(status);
      const renewed = live.filter((nodeId) =>
        status.nodes.some((n) => n.nodeId === nodeId && n.issuerFingerprintSha256 === issuing),
      );
      if (renewed.length !== reported) {
        reported = renewed.length;
        await context.log(`${renewed.length} of ${live.length} live nodes renewed with the new CA`);
        await context.progress(0.2 + (0.6 * renewed.length) / Math.max(1, live.length));
      }
      if (live.length > 0 && renewed.length === live.length) return;
      if (Date.now() > deadline)
        throw new DomainError(
          ErrorCode.Conflict,
          `nodes did not renew with the new CA within ${RENEWAL_WAIT_MS / 1000} s: ${live.filter((n) => !renewed.includes(n)).join(', ')}`,
        );
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /**
   * Begin and finish need the agent that holds the cluster CA key: each endpoint in turn, past
   * those that answer they hold none.
   */
  private async onIssuer(
    connection: AgentConnection,
    call: (single: AgentConnection) => Promise<CaRotationStatus__Output>,
  ): Promise<CaRotationStatus__Output> {
    const refusals: string[] = [];
    for (const endpoint of connection.endpoints) {
      try {
        return await call({ ...connection, endpoints: [endpoint] });
      } catch (error) {
        if (
          !(error instanceof AgentError) ||
          !(error.triesNextEndpoint || /holds no cluster CA key/.test(error.message))
        )
          throw error;
        refusals.push(`${endpoint}: ${error.message}`);
      }
    }
    throw new DomainError(
      ErrorCode.Conflict,
      `no endpoint of the remote holds the cluster CA key (tls.issuer); list an issuing node's agent among its endpoints (${refusals.join('; ')})`,
    );
  }
}

function view(
  remoteId: string,
  connection: AgentConnection,
  status: CaRotationStatus__Output,
  registry: readonly { alive: boolean; info: { nodeId: string } | null }[],
): CaRotationStatusView {
  const issuing = issuingOf(status);
  const alive = new Set(registry.filter((n) => n.alive).map((n) => n.info?.nodeId));
  return {
    remote: remoteId,
    rotating: status.rotating,
    clusterCas: status.cas.map((ca) => ({
      fingerprintSha256: ca.fingerprintSha256,
      subject: ca.subject,
      pem: ca.pem,
    })),
    remoteCaFingerprints: splitPemBundle(connection.caCertPem).map((pem) => fingerprintSha256(pem)),
    issuingFingerprintSha256: issuing,
    nodes: status.nodes.map((node) => ({
      nodeId: node.nodeId,
      issuerFingerprintSha256: node.issuerFingerprintSha256,
      notAfter: node.notAfter,
      alive: alive.has(node.nodeId),
      onIssuingCa: issuing ? node.issuerFingerprintSha256 === issuing : null,
    })),
  };
}

/**
 * The CA renewals come from: as the issuing agent says, else the newest the cluster trusts (a
 * rotation appends the new CA), which is what an agent without the CA key can tell.
 */
function issuingOf(status: CaRotationStatus__Output): string | null {
  return status.issuingFingerprintSha256 || status.cas.at(-1)?.fingerprintSha256 || null;
}

/** `principal!token` → `principal`. */
function ownerPrincipal(owner: string): string {
  const bang = owner.indexOf('!');
  return bang > 0 ? owner.slice(0, bang) : owner;
}
