import { parseAgentApiKey } from '@debvisor/common';
import { createCa, fingerprintSha256, issueCertificate, type KeyPairPem } from '@debvisor/pki';
import {
  agentClient,
  createManagerIdentity,
  issueAgentCertificate,
  startCluster,
  type TestCluster,
} from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { connect, type ConnectionOptions, type DetailedPeerCertificate } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

const FORWARDED = {
  principal: 'x-debvisor-forwarded-principal',
  permissions: 'x-debvisor-forwarded-permissions',
  keyId: 'x-debvisor-forwarded-key-id',
};

describe('mutual TLS and peer identity (real agent)', () => {
  let cluster: TestCluster;
  let apiKey: string;
  let otherClientCa: KeyPairPem;

  beforeAll(async () => {
    otherClientCa = await createCa('another trusted client CA');
    cluster = await startCluster({
      clusterId: 'mtls',
      nodes: 1,
      vmsPerNode: 1,
      trustedClientCaPem: otherClientCa.certPem,
    });
    apiKey = await cluster.createApiKey(['*']);
  });
  afterAll(() => cluster?.stop());

  const endpoint = () => cluster.agents[0].endpoint;
  const port = () => Number(endpoint().split(':')[1]);

  /**
   * A raw TLS connection to the agent (ALPN h2, as gRPC makes). Accepted: the server's HTTP/2
   * preface arrives. Refused: a TLS alert (error) or the server closing the connection at once (with
   * TLS 1.3 the server judges the client certificate only after the client finished its handshake).
   */
  function handshake(
    options: ConnectionOptions,
  ): Promise<{ accepted: boolean; protocol: string | null; error?: Error }> {
    return new Promise((resolve) => {
      const socket = connect({
        host: '127.0.0.1',
        port: port(),
        servername: 'localhost',
        ALPNProtocols: ['h2'],
        ...options,
      });
      let finished = false;
      const done = (result: { accepted: boolean; error?: Error }) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        resolve({ ...result, protocol: socket.getProtocol() });
        socket.destroy();
      };
      const timer = setTimeout(
        () => done({ accepted: false, error: new Error('no answer') }),
        3_000,
      );
      socket.on('data', () => done({ accepted: true }));
      socket.on('error', (error) => done({ accepted: false, error }));
      socket.on('close', () => done({ accepted: false }));
    });
  }

  it('accepts a TLS 1.3 client whose certificate comes from a trusted client CA', async () => {
    const client = cluster.connect(apiKey);
    await expect(client.node.getHealth({})).resolves.toMatchObject({ status: 'ok' });
    client.close();
    const { accepted, protocol } = await handshake({
      ca: cluster.caPem,
      cert: cluster.client.certPem,
      key: cluster.client.keyPem,
    });
    expect(accepted).toBe(true);
    expect(protocol).toBe('TLSv1.3');
  });

  it('serves its chain up to the cluster CA, so that a manager can pin the CA fingerprint on first contact', async () => {
    const leaf = await new Promise<DetailedPeerCertificate>((resolve, reject) => {
      const socket = connect({
        host: '127.0.0.1',
        port: port(),
        ALPNProtocols: ['h2'],
        rejectUnauthorized: false,
        cert: cluster.client.certPem,
        key: cluster.client.keyPem,
      });
      socket.once('secureConnect', () => {
        resolve(socket.getPeerCertificate(true));
        socket.destroy();
      });
      socket.once('error', reject);
    });
    expect(leaf.subject.CN).toBe('agent:node-1');
    expect(leaf.issuerCertificate.fingerprint256).toBe(fingerprintSha256(cluster.caPem));
  });

  it('refuses a client without a certificate', async () => {
    const client = agentClient(endpoint(), { caPem: cluster.caPem, apiKey });
    const error = await rpcError(client.node.getHealth({}));
    client.close();
    expect(error.code).toBe(status.UNAVAILABLE);
    const raw = await handshake({ ca: cluster.caPem });
    expect(raw.accepted).toBe(false);
    expect(raw.error?.message).toMatch(/certificate required/i);
  });

  it('refuses a client certificate from a CA it does not trust', async () => {
    const rogue = await createManagerIdentity('rogue');
    const client = agentClient(endpoint(), {
      caPem: cluster.caPem,
      certPem: rogue.client.certPem,
      keyPem: rogue.client.keyPem,
      apiKey,
    });
    const error = await rpcError(client.node.getHealth({}));
    client.close();
    expect(error.code).toBe(status.UNAVAILABLE);
    const raw = await handshake({
      ca: cluster.caPem,
      cert: rogue.client.certPem,
      key: rogue.client.keyPem,
    });
    expect(raw.accepted).toBe(false);
  });

  it('refuses a client that offers only TLS 1.2', async () => {
    const { accepted, error } = await handshake({
      ca: cluster.caPem,
      cert: cluster.client.certPem,
      key: cluster.client.keyPem,
      maxVersion: 'TLSv1.2',
    });
    expect(accepted).toBe(false);
    expect(error?.message).toMatch(/protocol version/i);
  });

  describe('forwarded calls', () => {
    const call = (pair: KeyPairPem, metadata: Record<string, string>, key?: string) => {
      const client = agentClient(endpoint(), {
        caPem: cluster.caPem,
        certPem: pair.certPem,
        keyPem: pair.keyPem,
        apiKey: key,
      });
      return client.node.getClusterInfo({}, { metadata }).finally(() => client.close());
    };

    /** The id of a dvk_ key (what a forwarding agent names). */
    const idOf = (key: string) => parseAgentApiKey(key)!.id;

    it("acts with the forwarded API key's own rights when a live node of the cluster forwards it", async () => {
      const key = await cluster.createApiKey(['node:registry:read', 'vm:*'], {
        principal: 'manager:dc-east',
      });
      const node1 = await issueAgentCertificate(cluster.ca, 'node-1');
      await expect(
        call(node1, {
          [FORWARDED.principal]: 'manager:dc-east',
          [FORWARDED.keyId]: idOf(key),
          // Rights a forwarding agent asserts count for nothing: the key's own apply.
          [FORWARDED.permissions]: '*',
        }),
      ).resolves.toMatchObject({
        principal: 'manager:dc-east',
        permissions: ['node:registry:read', 'vm:*'],
      });
    });

    it('holds a forwarded caller to the permissions of its key, whatever the peer asserts', async () => {
      const key = await cluster.createApiKey(['vm:instance:read'], { principal: 'manager:ro' });
      const node1 = await issueAgentCertificate(cluster.ca, 'node-1');
      const error = await rpcError(
        call(node1, {
          [FORWARDED.principal]: 'manager:ro',
          [FORWARDED.keyId]: idOf(key),
          [FORWARDED.permissions]: '*',
        }),
      );
      expect(error.code).toBe(status.PERMISSION_DENIED);
    });

    it('refuses a forged assertion of a principal and rights without an API key', async () => {
      const node1 = await issueAgentCertificate(cluster.ca, 'node-1');
      const error = await rpcError(
        call(node1, { [FORWARDED.principal]: 'admin', [FORWARDED.permissions]: '*' }),
      );
      expect(error.code).toBe(status.UNAUTHENTICATED);
      expect(error.details).toMatch(/names the API key that authenticated its caller/);
    });

    it('refuses a forwarded key id under another principal, and a revoked forwarded key', async () => {
      const key = await cluster.createApiKey(['*'], { principal: 'manager:dc-east' });
      const node1 = await issueAgentCertificate(cluster.ca, 'node-1');
      const other = await rpcError(
        call(node1, { [FORWARDED.principal]: 'someone-else', [FORWARDED.keyId]: idOf(key) }),
      );
      expect(other.code).toBe(status.UNAUTHENTICATED);
      expect(other.details).toBe('the forwarded principal does not hold the forwarded API key');

      const revoked = await cluster.admin(['apikey', 'revoke', idOf(key)]);
      expect(revoked.code).toBe(0);
      const { value } = await eventually(
        () =>
          rpcError(
            call(node1, {
              [FORWARDED.principal]: 'manager:dc-east',
              [FORWARDED.keyId]: idOf(key),
            }),
          ).then((error) => (error.code === status.UNAUTHENTICATED ? error : undefined)),
        10_000,
      );
      expect(value.details).toBe('the forwarded API key is revoked');
      const unknown = await rpcError(
        call(node1, {
          [FORWARDED.principal]: 'manager:dc-east',
          [FORWARDED.keyId]: '0123456789abcdef',
        }),
      );
      expect(unknown.code).toBe(status.UNAUTHENTICATED);
      expect(unknown.details).toBe('the forwarded API key is unknown in this cluster');
    });

    it('refuses a forwarded call from a cluster certificate of a node that is not registered', async () => {
      const key = await cluster.createApiKey(['*'], { principal: 'manager:dc-east' });
      const ghost = await issueAgentCertificate(cluster.ca, 'node-9');
      const error = await rpcError(
        call(ghost, { [FORWARDED.principal]: 'manager:dc-east', [FORWARDED.keyId]: idOf(key) }),
      );
      expect(error.code).toBe(status.UNAUTHENTICATED);
      expect(error.details).toBe(
        'forwarded calls are accepted only from live registered nodes; node-9 is not one',
      );
    });

    it('refuses a forwarded identity from a client certificate, even one that looks like an agent', async () => {
      const lookalike = await issueCertificate(otherClientCa, {
        commonName: 'agent:node-1',
        organizationalUnit: 'debvisor-agent',
        usage: 'client',
      });
      for (const pair of [
        lookalike,
        { certPem: cluster.client.certPem, keyPem: cluster.client.keyPem },
      ]) {
        const error = await rpcError(
          call(pair, { [FORWARDED.principal]: 'admin', [FORWARDED.permissions]: '*' }, apiKey),
        );
        expect(error.code).toBe(status.UNAUTHENTICATED);
        expect(error.details).toBe('forwarded calls are accepted only from agents of this cluster');
      }
    });

    it('still wants an API key from an agent certificate that forwards nobody', async () => {
      const peer = await issueAgentCertificate(cluster.ca, 'node-9');
      const error = await rpcError(call(peer, {}));
      expect(error.code).toBe(status.UNAUTHENTICATED);
      expect(error.details).toMatch(/missing API key/);
    });
  });
});
