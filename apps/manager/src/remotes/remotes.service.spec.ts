import { createCa, fingerprintSha256, type KeyPairPem } from '@debvisor/pki';
import { beforeAll, describe, expect, it } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { AuditService } from '../audit/audit.service';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { PresentedCertificate } from '../agents/agent-connection';
import { AgentError } from '../agents/agent-error';
import type { AccessPolicy } from '../authz/access-policy.service';
import { testCaller } from '../../test/test-caller';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { RemoteEvents } from './remote-events';
import type { Remote } from './remote.model';
import type { NewRemote, RemotesRepository } from './remotes.repository';
import { RemotesService, type CreateRemoteInput } from './remotes.service';

const NOW = new Date('2026-05-01T12:00:00Z');
const CALLER = testCaller([{ path: '/', role: 'Admin' }]);
const KEY = `dvk_0123456789abcdef_${'K'.repeat(43)}`;
let CA: KeyPairPem;
let CA_FINGERPRINT: string;
beforeAll(async () => {
  CA = await createCa('cluster CA');
  CA_FINGERPRINT = fingerprintSha256(CA.certPem);
});
const CLUSTER_INFO = {
  clusterId: 'dc-east',
  nodeId: 'node-1',
  agentVersion: '0.1.0',
  nodeCount: 3,
  permissions: ['*'],
  principal: 'manager',
};

function input(overrides: Partial<CreateRemoteInput> = {}): CreateRemoteInput {
  return {
    id: 'dc-east',
    description: '',
    endpoints: ['10.0.0.1:9443', '10.0.0.2:9443'],
    caCertPem: CA.certPem,
    credentials: [{ name: 'admin', key: KEY }],
    addAnyway: false,
    ...overrides,
  };
}

function stored(remote: NewRemote): Remote {
  return {
    ...remote,
    credentials: remote.credentials.map((c) => ({
      name: c.name,
      keyId: '0123456789abcdef',
      createdAt: remote.at,
    })),
    createdAt: remote.at,
    updatedAt: remote.at,
  };
}

function service(parts: {
  remotes?: Partial<RemotesRepository>;
  agents?: Partial<AgentClientRepository>;
  events?: Partial<RemoteEvents>;
  policy?: Partial<AccessPolicy>;
  notes?: unknown[];
}) {
  return new RemotesService(
    strictMock<RemotesRepository>('RemotesRepository', parts.remotes),
    strictMock<AgentClientRepository>('AgentClientRepository', parts.agents),
    strictMock<RemoteEvents>('RemoteEvents', parts.events),
    strictMock<AccessPolicy>('AccessPolicy', parts.policy),
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
    strictMock<AuditService>('AuditService', {
      note: (details) => void parts.notes?.push(details),
    }),
  );
}

function chain(...certs: Partial<PresentedCertificate>[]): PresentedCertificate[] {
  return certs.map((c) => ({
    subject: 'CN=x',
    issuer: 'CN=x',
    fingerprintSha256: '00',
    isCa: false,
    notBefore: '',
    notAfter: '',
    pem: '',
    ...c,
  }));
}

async function errorOf(promise: Promise<unknown>): Promise<DomainError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
  throw new Error('expected a domain error');
}

describe('RemotesService.create', () => {
  it('tests the connection with the CA and the key, stores the remote and announces it', async () => {
    const created: NewRemote[] = [];
    const events: unknown[] = [];
    const svc = service({
      remotes: {
        get: async () => null,
        create: async (remote: NewRemote) => (created.push(remote), stored(remote)),
      },
      agents: { getClusterInfo: async () => CLUSTER_INFO, invalidate: () => undefined },
      events: { emit: (event) => void events.push(event) },
    });
    const answer = await svc.create(input());
    expect(answer.connection).toEqual({
      ok: true,
      clusterId: 'dc-east',
      agentVersion: '0.1.0',
      nodeCount: 3,
      nodeId: 'node-1',
    });
    expect(answer.trust).toEqual({
      caFingerprint: CA_FINGERPRINT,
      caCertPem: CA.certPem,
      resolved: true,
    });
    expect(created[0]).toMatchObject({ id: 'dc-east', caFingerprint: CA_FINGERPRINT, at: NOW });
    expect(events).toEqual([{ type: 'changed', remoteId: 'dc-east' }]);
    expect(JSON.stringify(answer)).not.toContain(KEY);
  });

  it('notes for the audit log what was configured, with the key ids but never the keys', async () => {
    const notes: unknown[] = [];
    const svc = service({
      remotes: { get: async () => null, create: async (remote: NewRemote) => stored(remote) },
      agents: { getClusterInfo: async () => CLUSTER_INFO, invalidate: () => undefined },
      events: { emit: () => undefined },
      notes,
    });
    await svc.create(input());
    expect(notes).toEqual([
      {
        description: expect.any(String),
        endpoints: ['10.0.0.1:9443', '10.0.0.2:9443'],
        caFingerprint: CA_FINGERPRINT,
        credentials: [{ name: 'admin', keyId: '0123456789abcdef' }],
        connection: 'ok',
        addAnyway: false,
      },
    ]);
    expect(JSON.stringify(notes)).not.toContain(KEY.split('_').slice(2).join('_'));
  });

  it('refuses an existing id with 409 before contacting anything', async () => {
    const svc = service({
      remotes: {
        get: async () =>
          stored({ ...input(), caCertPem: CA.certPem, caFingerprint: CA_FINGERPRINT, at: NOW }),
      },
    });
    expect((await errorOf(svc.create(input()))).code).toBe(ErrorCode.Conflict);
  });

  it('refuses an unreachable remote and stores nothing', async () => {
    const svc = service({
      remotes: { get: async () => null },
      agents: {
        getClusterInfo: async () => {
          throw new AgentError(
            ErrorCode.RemoteUnreachable,
            '10.0.0.1:9443 is unreachable',
            '10.0.0.1:9443',
          );
        },
        invalidate: () => undefined,
      },
    });
    const error = await errorOf(svc.create(input()));
    expect(error.code).toBe(ErrorCode.RemoteUnreachable);
    expect(error.message).toContain('10.0.0.1:9443');
  });

  it('stores an unreachable remote with addAnyway and reports why the test failed', async () => {
    const svc = service({
      remotes: { get: async () => null, create: async (remote: NewRemote) => stored(remote) },
      agents: {
        getClusterInfo: async () => {
          throw new AgentError(ErrorCode.RemoteUnreachable, 'down', 'e');
        },
        invalidate: () => undefined,
      },
      events: { emit: () => undefined },
    });
    const answer = await svc.create(input({ addAnyway: true }));
    expect(answer.connection).toEqual({
      ok: false,
      error: { code: 'remote_unreachable', message: 'down' },
    });
  });

  it('names the credential whose key the remote refused', async () => {
    const svc = service({
      remotes: { get: async () => null },
      agents: {
        getClusterInfo: async (connection) => {
          if (connection.apiKey === KEY) return CLUSTER_INFO;
          throw new AgentError(
            ErrorCode.RemoteCredentialRejected,
            'the agent did not accept the API key',
            'e',
          );
        },
        invalidate: () => undefined,
      },
    });
    const other = `dvk_fedcba9876543210_${'Z'.repeat(43)}`;
    const error = await errorOf(
      svc.create(
        input({
          credentials: [
            { name: 'admin', key: KEY },
            { name: 'ci', key: other },
          ],
        }),
      ),
    );
    expect(error.code).toBe(ErrorCode.RemoteCredentialRejected);
    expect(error.message).toMatch(/^credential ci: /);
  });

  it('with only a pin, keeps the presented CA whose fingerprint matches, trying endpoints in order', async () => {
    const probed: string[] = [];
    let created: NewRemote | undefined;
    const svc = service({
      remotes: {
        get: async () => null,
        create: async (remote: NewRemote) => ((created = remote), stored(remote)),
      },
      agents: {
        probeCertificates: async (endpoint: string) => {
          probed.push(endpoint);
          if (endpoint === '10.0.0.1:9443')
            throw new AgentError(ErrorCode.RemoteUnreachable, 'refused', endpoint);
          return chain(
            { subject: 'CN=agent', fingerprintSha256: 'AA' },
            {
              subject: 'CN=cluster CA',
              fingerprintSha256: CA_FINGERPRINT,
              isCa: true,
              pem: CA.certPem,
            },
          );
        },
        getClusterInfo: async (connection) => (
          expect(connection.caCertPem).toBe(CA.certPem),
          CLUSTER_INFO
        ),
        invalidate: () => undefined,
      },
      events: { emit: () => undefined },
    });
    const answer = await svc.create(
      input({
        caCertPem: undefined,
        caFingerprint: CA_FINGERPRINT.replace(/:/g, '').toLowerCase(),
      }),
    );
    expect(probed).toEqual(['10.0.0.1:9443', '10.0.0.2:9443']);
    expect(created).toMatchObject({ caCertPem: CA.certPem, caFingerprint: CA_FINGERPRINT });
    expect(answer.trust.resolved).toBe(true);
  });

  it('refuses a pin no presented certificate matches, naming both fingerprints', async () => {
    const svc = service({
      remotes: { get: async () => null },
      agents: {
        probeCertificates: async () =>
          chain({ subject: 'CN=other CA', fingerprintSha256: 'BB:BB', isCa: true }),
      },
    });
    const pin = 'AB'.repeat(32);
    const error = await errorOf(svc.create(input({ caCertPem: undefined, caFingerprint: pin })));
    expect(error.code).toBe(ErrorCode.RemoteFingerprintMismatch);
    expect(error.message).toContain('fingerprint mismatch');
    expect(error.message).toContain('AB:AB:AB');
    expect(error.message).toContain('BB:BB');
  });

  it('refuses a pin that matches a certificate that is not a CA', async () => {
    const svc = service({
      remotes: { get: async () => null },
      agents: {
        probeCertificates: async () =>
          chain({
            subject: 'CN=agent:node-1',
            fingerprintSha256: 'AB:'.repeat(31) + 'AB',
            isCa: false,
          }),
      },
    });
    const error = await errorOf(
      svc.create(input({ caCertPem: undefined, caFingerprint: 'AB'.repeat(32) })),
    );
    expect(error.code).toBe(ErrorCode.RemoteFingerprintMismatch);
    expect(error.message).toContain('not a CA');
  });
});

describe('RemotesService.connectionFor', () => {
  const remote = (): Remote => ({
    id: 'dc-east',
    description: '',
    endpoints: ['10.0.0.1:9443'],
    caCertPem: null,
    caFingerprint: CA_FINGERPRINT,
    credentials: [{ name: 'admin', keyId: '0123456789abcdef', createdAt: NOW }],
    createdAt: NOW,
    updatedAt: NOW,
  });

  it('resolves a pinned CA on first contact and stores it', async () => {
    const updates: unknown[] = [];
    const svc = service({
      remotes: {
        get: async () => remote(),
        update: async (_id, patch) => (updates.push(patch), { ...remote(), caCertPem: CA.certPem }),
        credential: async () => ({ name: 'admin', key: KEY, permissions: ['*'] }),
      },
      agents: {
        probeCertificates: async () =>
          chain({ fingerprintSha256: CA_FINGERPRINT, isCa: true, pem: CA.certPem }),
      },
    });
    await expect(svc.connectionFor('dc-east')).resolves.toEqual({
      remoteId: 'dc-east',
      endpoints: ['10.0.0.1:9443'],
      caCertPem: CA.certPem,
      apiKey: KEY,
    });
    expect(updates).toEqual([{ caCertPem: CA.certPem }]);
  });

  it('refuses to connect without a credential', async () => {
    const svc = service({
      remotes: {
        get: async () => ({ ...remote(), caCertPem: CA.certPem }),
        credential: async () => null,
      },
    });
    expect((await errorOf(svc.connectionFor('dc-east'))).message).toContain('no credentials');
  });

  it('answers 404 for an unknown remote', async () => {
    const svc = service({ remotes: { get: async () => null } });
    expect((await errorOf(svc.connectionFor('nope'))).code).toBe(ErrorCode.NotFound);
  });
});

describe('RemotesService.update and delete', () => {
  it('drops cached channels and announces the change', async () => {
    const calls: string[] = [];
    const remote: Remote = {
      id: 'r',
      description: '',
      endpoints: ['a:1'],
      caCertPem: CA.certPem,
      caFingerprint: CA_FINGERPRINT,
      credentials: [],
      createdAt: NOW,
      updatedAt: NOW,
    };
    const svc = service({
      remotes: {
        get: async () => remote,
        update: async () => ({ ...remote, endpoints: ['b:2'] }),
        delete: async () => true,
      },
      agents: { invalidate: (id: string) => void calls.push(`invalidate ${id}`) },
      events: { emit: (event) => void calls.push(`${event.type} ${event.remoteId}`) },
      policy: { authorizeDirectly: () => void calls.push('authorized on /remotes') },
    });
    expect((await svc.update(CALLER, 'r', { endpoints: ['b:2'] })).endpoints).toEqual(['b:2']);
    await svc.delete('r');
    expect(calls).toEqual([
      'authorized on /remotes',
      'invalidate r',
      'changed r',
      'invalidate r',
      'removed r',
    ]);
  });
});
