import { fingerprintSha256, normalizeFingerprint, splitPemBundle } from '@debvisor/pki';
import { Injectable } from '@nestjs/common';
import { X509Certificate } from 'node:crypto';
import type { AgentConnection, PresentedCertificate } from '../agents/agent-connection';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { AgentError } from '../agents/agent-error';
import { AuditService } from '../audit/audit.service';
import type { Caller } from '../authz/caller';
import { AccessPolicy } from '../authz/access-policy.service';
import { remoteAclPath } from '../authz/acl-paths';
import { ClockRepository } from '../common/clock.repository';
import { agentApiKeyId, permissionAllows } from '@debvisor/common';
import { DomainError, PermissionDenied } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { RemoteEvents } from './remote-events';
import type { NewCredential, Remote } from './remote.model';
import type { ConnectionReport, RemoteView } from './remotes.dto';
import { RemotesRepository } from './remotes.repository';

export interface CreateRemoteInput {
  id: string;
  description: string;
  endpoints: string[];
  caCertPem?: string;
  caFingerprint?: string;
  credentials: NewCredential[];
  addAnyway: boolean;
}

export interface UpdateRemoteInput {
  description?: string;
  endpoints?: string[];
  caCertPem?: string;
  caFingerprint?: string;
  /** With a new CA or fingerprint: the key of every stored credential, entered again. */
  credentials?: NewCredential[];
}

interface Trust {
  caCertPem: string | null;
  caFingerprint: string;
}

@Injectable()
export class RemotesService {
  private connectionTests = 0;

  constructor(
    private readonly remotes: RemotesRepository,
    private readonly agents: AgentClientRepository,
    private readonly events: RemoteEvents,
    private readonly auth: AccessPolicy,
    private readonly clock: ClockRepository,
    private readonly audit: AuditService,
  ) {}

  /** The remotes the caller may see. */
  async list(caller: Caller): Promise<{ items: RemoteView[] }> {
    const remotes = await this.remotes.list();
    const visible = this.auth.allowedRemotes(
      caller,
      'remote.audit',
      remotes.map((r) => r.id),
    );
    return { items: remotes.filter((r) => visible.has(r.id)).map(toView) };
  }

  async get(id: string): Promise<RemoteView> {
    return toView(await this.require(id));
  }

  /**
   * Adds a remote after testing it: TLS against the CA (or the pinned fingerprint), every
   * credential accepted, the cluster's node count. A failed test refuses the remote with the
   * problem named, unless `addAnyway`.
   */
  async create(input: CreateRemoteInput): Promise<RemoteView & { connection: ConnectionReport }> {
    if (await this.remotes.get(input.id))
      throw new DomainError(ErrorCode.Conflict, `remote ${input.id} already exists`);
    let trust = trustFrom(input);
    let connection: ConnectionReport;
    const learned = new Map<string, string[]>();
    try {
      trust = await this.resolveTrust(input.endpoints, trust);
      connection = await this.testCredentials(
        input.id,
        input.endpoints,
        trust.caCertPem!,
        input.credentials,
        learned,
      );
    } catch (error) {
      if (!(error instanceof DomainError) || !input.addAnyway) throw error;
      connection = { ok: false, error: { code: error.code, message: error.message } };
    }
    const created = await this.remotes.create({
      id: input.id,
      description: input.description,
      endpoints: input.endpoints,
      caCertPem: trust.caCertPem,
      caFingerprint: trust.caFingerprint,
      credentials: input.credentials.map((c) => ({
        name: c.name,
        key: c.key,
        permissions: learned.get(c.name),
      })),
      at: this.clock.now(),
    });
    this.events.emit({ type: 'changed', remoteId: created.id });
    this.audit.note({
      ...configFacts(created),
      connection: connection.ok ? 'ok' : connection.error?.code,
      addAnyway: input.addAnyway,
    });
    return { ...toView(created), connection };
  }

  /**
   * Changes description, endpoints or trust. Cached channels are dropped and the remote refreshed.
   * Where the manager sends the remote's keys — its endpoints and the CA that vouches for them — is
   * changed only with remote.modify on `/remotes` granted directly (never through a remote group),
   * and a new CA never receives the stored keys: they must be entered again (`credentials`, every
   * stored name) and are tested against the new trust before anything is stored. New endpoints
   * under the stored CA need no new keys: a key is sent only after the endpoint's certificate
   * verified against that CA.
   */
  async update(caller: Caller, id: string, input: UpdateRemoteInput): Promise<RemoteView> {
    const remote = await this.require(id);
    const trustChanges = input.caCertPem !== undefined || input.caFingerprint !== undefined;
    if (input.endpoints !== undefined || trustChanges)
      this.auth.authorizeDirectly(
        caller,
        'remote.modify',
        '/remotes',
        "changing a remote's endpoints or trust",
      );
    let trust = trustChanges ? trustFrom(input) : undefined;
    let credentials: NewCredential[] | undefined;
    if (input.credentials !== undefined && !trustChanges)
      throw new DomainError(
        ErrorCode.ValidationFailed,
        'credentials: give them only with a new caCertPem or caFingerprint (add or remove credentials with /credentials)',
      );
    if (trust) {
      const stored = remote.credentials.map((c) => c.name);
      const given = (input.credentials ?? []).map((c) => c.name);
      const missing = stored.filter((name) => !given.includes(name));
      const unknown = given.filter((name) => !stored.includes(name));
      if (input.credentials === undefined || missing.length > 0 || unknown.length > 0)
        throw new DomainError(
          ErrorCode.ValidationFailed,
          `credentials: a new CA or fingerprint never receives the stored keys: enter the key of every credential again (${
            [
              missing.length ? `missing: ${missing.join(', ')}` : '',
              unknown.length ? `unknown: ${unknown.join(', ')}` : '',
            ]
              .filter(Boolean)
              .join('; ') || `expected: ${stored.join(', ')}`
          })`,
        );
      const endpoints = input.endpoints ?? remote.endpoints;
      trust = await this.resolveTrust(endpoints, trust);
      const learned = new Map<string, string[]>();
      await this.testCredentials(id, endpoints, trust.caCertPem!, input.credentials, learned);
      credentials = input.credentials.map((c) => ({
        name: c.name,
        key: c.key,
        permissions: learned.get(c.name),
      }));
    }
    const updated = await this.remotes.update(
      id,
      {
        description: input.description,
        endpoints: input.endpoints,
        caCertPem: trust?.caCertPem,
        caFingerprint: trust?.caFingerprint,
        credentials,
      },
      this.clock.now(),
    );
    if (!updated) throw DomainError.notFound(`remote ${id}`);
    this.agents.invalidate(id);
    this.events.emit({ type: 'changed', remoteId: id });
    this.audit.note({
      changed: Object.keys(input).filter((k) => input[k as keyof UpdateRemoteInput] !== undefined),
      ...configFacts(updated),
    });
    return toView(updated);
  }

  /**
   * The remote's CA bundle as its cluster's CA rotation changes it (old and new CA during the
   * rotation, then the new one alone): CAs the cluster answered over a connection verified with the
   * stored CA and authenticated with a stored key, so the keys keep going to the same cluster and
   * need not be entered again. Channels opened with the old bundle finish their calls.
   */
  async replaceClusterCas(id: string, casPem: string): Promise<RemoteView> {
    const cas = splitPemBundle(casPem);
    if (cas.length === 0 || cas.some((pem) => !new X509Certificate(pem).ca))
      throw new DomainError(
        ErrorCode.ValidationFailed,
        'caCertPem: a cluster CA bundle holds CA certificates only, at least one',
      );
    const updated = await this.remotes.update(
      id,
      { caCertPem: cas.join(''), caFingerprint: fingerprintSha256(cas[0]) },
      this.clock.now(),
    );
    if (!updated) throw DomainError.notFound(`remote ${id}`);
    this.agents.invalidate(id);
    this.events.emit({ type: 'changed', remoteId: id });
    return toView(updated);
  }

  async delete(id: string): Promise<void> {
    if (!(await this.remotes.delete(id))) throw DomainError.notFound(`remote ${id}`);
    this.agents.invalidate(id);
    this.events.emit({ type: 'removed', remoteId: id });
  }

  /** Adds a credential after checking that the remote accepts it (unless `addAnyway`). */
  async addCredential(
    remoteId: string,
    credential: NewCredential & { addAnyway: boolean },
  ): Promise<RemoteView & { connection: ConnectionReport }> {
    const remote = await this.require(remoteId);
    if (remote.credentials.some((c) => c.name === credential.name)) {
      throw new DomainError(
        ErrorCode.Conflict,
        `remote ${remoteId} already has a credential named ${credential.name}`,
      );
    }
    let connection: ConnectionReport;
    const learned = new Map<string, string[]>();
    try {
      const trust = await this.resolveTrust(remote.endpoints, remote);
      connection = await this.testCredentials(
        remoteId,
        remote.endpoints,
        trust.caCertPem!,
        [credential],
        learned,
      );
    } catch (error) {
      if (!(error instanceof DomainError) || !credential.addAnyway) throw error;
      connection = { ok: false, error: { code: error.code, message: error.message } };
    }
    await this.remotes.addCredential(
      remoteId,
      { name: credential.name, key: credential.key, permissions: learned.get(credential.name) },
      this.clock.now(),
    );
    this.events.emit({ type: 'changed', remoteId });
    this.audit.note({
      credential: credential.name,
      keyId: agentApiKeyId(credential.key),
      connection: connection.ok ? 'ok' : connection.error?.code,
      addAnyway: credential.addAnyway,
    });
    return { ...toView((await this.remotes.get(remoteId))!), connection };
  }

  async removeCredential(remoteId: string, name: string): Promise<RemoteView> {
    await this.require(remoteId);
    if (!(await this.remotes.removeCredential(remoteId, name)))
      throw DomainError.notFound(`credential ${name} of remote ${remoteId}`);
    this.events.emit({ type: 'changed', remoteId });
    this.audit.note({ credential: name });
    return toView((await this.remotes.get(remoteId))!);
  }

  /** The chain an endpoint presents, for a user to confirm before pinning. */
  async probe(
    endpoint: string,
  ): Promise<{ endpoint: string; certificates: PresentedCertificate[] }> {
    const certificates = await this.agents.probeCertificates(endpoint);
    this.audit.note({ endpoint, presented: certificates.map((c) => c.fingerprintSha256) });
    return { endpoint, certificates };
  }

  /**
   * How to call a remote's agents now: its endpoints, its CA (resolved from the pin on first
   * contact and then stored) and the key of its first credential.
   */
  /**
   * The connection to act on the remote with a credential: the given one (a remote group's entry),
   * or the remote's default. When the credential's cluster permissions are known and do not allow
   * `clusterPermission`, the manager refuses before calling (403): the effective right is the
   * manager role intersected with what the credential may do on the cluster.
   */
  async connectionFor(
    remoteId: string,
    credentialId: string | null = null,
    clusterPermission?: string,
  ): Promise<AgentConnection> {
    const remote = await this.require(remoteId);
    let caCertPem = remote.caCertPem;
    if (!caCertPem) {
      const trust = await this.resolveTrust(remote.endpoints, remote);
      caCertPem = trust.caCertPem!;
      await this.remotes.update(remoteId, { caCertPem }, this.clock.now());
    }
    const credential = await this.remotes.credential(remoteId, credentialId);
    if (!credential)
      throw new DomainError(
        ErrorCode.RemoteCredentialRejected,
        `remote ${remoteId} has no ${credentialId ? 'such credential' : 'credentials'}`,
      );
    if (
      clusterPermission &&
      credential.permissions &&
      !permissionAllows(credential.permissions, clusterPermission)
    ) {
      throw new PermissionDenied(
        { privilege: clusterPermission, path: remoteAclPath(remoteId) },
        {},
        `credential ${credential.name} of remote ${remoteId} may not do this on the cluster (needs ${clusterPermission}; it holds ${credential.permissions.join(', ') || 'nothing'})`,
      );
    }
    return { remoteId, endpoints: remote.endpoints, caCertPem, apiKey: credential.key };
  }

  listIds(): Promise<string[]> {
    return this.remotes.listIds();
  }

  private async require(id: string): Promise<Remote> {
    const remote = await this.remotes.get(id);
    if (!remote) throw DomainError.notFound(`remote ${id}`);
    return remote;
  }

  /**
   * With a CA certificate, nothing to do. With only a pinned fingerprint: connect to the endpoints
   * in order and keep the presented CA certificate whose fingerprint matches the pin.
   */
  private async resolveTrust(endpoints: readonly string[], trust: Trust): Promise<Trust> {
    if (trust.caCertPem) return trust;
    const failures: AgentError[] = [];
    for (const endpoint of endpoints) {
      let chain: PresentedCertificate[];
      try {
        chain = await this.agents.probeCertificates(endpoint);
      } catch (error) {
        if (error instanceof AgentError && error.triesNextEndpoint) {
          failures.push(error);
          continue;
        }
        throw error;
      }
      const match = chain.find((cert) => cert.fingerprintSha256 === trust.caFingerprint);
      if (!match) {
        throw new DomainError(
          ErrorCode.RemoteFingerprintMismatch,
          `fingerprint mismatch: none of the certificates presented by ${endpoint} has the pinned fingerprint ${trust.caFingerprint}; ` +
            `it presented ${chain.map((c) => `${c.subject} (${c.fingerprintSha256})`).join(', ')}`,
        );
      }
      if (!match.isCa) {
        throw new DomainError(
          ErrorCode.RemoteFingerprintMismatch,
          `the pinned fingerprint ${trust.caFingerprint} is that of ${match.subject}, which is not a CA certificate; pin the cluster CA`,
        );
      }
      return { caCertPem: match.pem, caFingerprint: trust.caFingerprint };
    }
    throw new DomainError(
      ErrorCode.RemoteUnreachable,
      `cannot check the pinned fingerprint: no endpoint could be reached (${failures.map((f) => f.message).join('; ')})`,
    );
  }

  /** Every credential must be accepted; answers what the first one learned about the cluster. */
  private async testCredentials(
    remoteId: string,
    endpoints: readonly string[],
    caCertPem: string,
    credentials: readonly NewCredential[],
    learned = new Map<string, string[]>(),
  ): Promise<ConnectionReport> {
    // Own channels, so that a test neither disturbs nor reuses the channels in use for this remote.
    const channelGroup = `connection-test:${remoteId}:${++this.connectionTests}`;
    let report: ConnectionReport | undefined;
    learned.clear();
    try {
      for (const credential of credentials) {
        try {
          const info = await this.agents.getClusterInfo({
            remoteId,
            endpoints,
            caCertPem,
            apiKey: credential.key,
            channelGroup,
          });
          report ??= {
            ok: true,
            clusterId: info.clusterId,
            agentVersion: info.agentVersion,
            nodeCount: info.nodeCount,
            nodeId: info.nodeId || undefined,
          };
          learned.set(credential.name, [...info.permissions]);
        } catch (error) {
          if (error instanceof DomainError && error.code === ErrorCode.RemoteCredentialRejected) {
            throw new DomainError(error.code, `credential ${credential.name}: ${error.message}`);
          }
          throw error;
        }
      }
    } finally {
      this.agents.invalidate(channelGroup);
    }
    return report!;
  }
}

/** What the audit log keeps of a remote's configuration: no keys, only their public ids. */
function configFacts(remote: Remote): Record<string, unknown> {
  return {
    description: remote.description,
    endpoints: [...remote.endpoints],
    caFingerprint: remote.caFingerprint,
    credentials: remote.credentials.map((c) => ({ name: c.name, keyId: c.keyId })),
  };
}

function trustFrom(input: { caCertPem?: string; caFingerprint?: string }): Trust {
  if (input.caCertPem) {
    const pem = splitPemBundle(input.caCertPem)[0];
    return { caCertPem: pem, caFingerprint: fingerprintSha256(pem) };
  }
  const fingerprint = input.caFingerprint ? normalizeFingerprint(input.caFingerprint) : undefined;
  if (!fingerprint)
    throw new DomainError(
      ErrorCode.ValidationFailed,
      'caCertPem: give exactly one of caCertPem and caFingerprint',
    );
  return { caCertPem: null, caFingerprint: fingerprint };
}

function toView(remote: Remote): RemoteView {
  return {
    id: remote.id,
    description: remote.description,
    endpoints: [...remote.endpoints],
    trust: {
      caFingerprint: remote.caFingerprint,
      caCertPem: remote.caCertPem,
      resolved: remote.caCertPem !== null,
    },
    credentials: remote.credentials.map((c) => ({
      name: c.name,
      keyId: c.keyId,
      createdAt: c.createdAt.toISOString(),
    })),
    createdAt: remote.createdAt.toISOString(),
    updatedAt: remote.updatedAt.toISOString(),
  };
}
