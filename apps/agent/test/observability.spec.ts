import {
  agentClient,
  sampleSum,
  samplesOf,
  startCluster,
  startEtcd,
  type EtcdInstance,
  type TestCluster,
} from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

const SERVICES = [
  'debvisor.v1.NodeService',
  'debvisor.v1.VmService',
  'debvisor.v1.StorageService',
  'debvisor.v1.MigrationService',
  'debvisor.v1.AccessService',
];

describe('the metrics listener (real agents)', () => {
  let cluster: TestCluster;
  let key: string;
  let readOnlyKey: string;

  beforeAll(async () => {
    cluster = await startCluster({ clusterId: 'obs', nodes: 2, vmsPerNode: 2 });
    [key, readOnlyKey] = await Promise.all([
      cluster.createApiKey(['*'], { principal: 'manager:obs' }),
      cluster.createApiKey(['node:registry:read']),
    ]);
  });
  afterAll(() => cluster?.stop());

  const scrape = async (agent = cluster.agents[0]) => {
    const answer = await cluster.scrape(agent);
    expect(answer.status).toBe(200);
    return answer.body;
  };

  it('serves the Prometheus text format over HTTPS with the agent certificate, and nothing else', async () => {
    const answer = await cluster.scrape();
    expect(answer.status).toBe(200);
    expect(answer.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(samplesOf(answer.body, 'debvisor_agent_info')).toEqual([
      {
        name: 'debvisor_agent_info',
        labels: {
          cluster: 'obs',
          node: 'node-1',
          version: '0.1.0',
          hypervisor_driver: 'sim',
          storage_driver: 'sim',
        },
        value: 1,
      },
    ]);
    expect(answer.body).toContain('process_cpu_user_seconds_total');
    expect((await cluster.scrape(undefined, { path: '/' })).status).toBe(404);
    expect((await cluster.scrape(undefined, { path: '/debug' })).status).toBe(404);
  });

  it('counts served calls by service, method and gRPC status, with authentication results and denials', async () => {
    const before = await scrape();
    const client = cluster.connect(key);
    const anonymous = cluster.connect(undefined);
    const reader = cluster.connect(readOnlyKey);
    await client.node.getClusterInfo({});
    await client.node.getClusterInfo({});
    expect((await rpcError(anonymous.node.getClusterInfo({}))).code).toBe(status.UNAUTHENTICATED);
    expect((await rpcError(reader.vm.listVms({}))).code).toBe(status.PERMISSION_DENIED);
    expect((await rpcError(client.access.syncUsersGroups({}))).code).toBe(status.UNIMPLEMENTED);
    for (const c of [client, anonymous, reader]) c.close();
    const after = await scrape();

    const delta = (name: string, labels: Record<string, string> = {}) =>
      sampleSum(after, name, labels) - sampleSum(before, name, labels);
    const call = (service: string, method: string, code: string) => ({
      service: `debvisor.v1.${service}`,
      method,
      status: code,
    });
    expect(delta('rpc_requests_total', call('NodeService', 'GetClusterInfo', 'OK'))).toBe(2);
    expect(
      delta('rpc_requests_total', call('NodeService', 'GetClusterInfo', 'UNAUTHENTICATED')),
    ).toBe(1);
    expect(delta('rpc_requests_total', call('VmService', 'ListVms', 'PERMISSION_DENIED'))).toBe(1);
    expect(
      delta('rpc_requests_total', call('AccessService', 'SyncUsersGroups', 'UNIMPLEMENTED')),
    ).toBe(1);
    expect(
      delta('rpc_request_duration_seconds_count', {
        service: 'debvisor.v1.NodeService',
        method: 'GetClusterInfo',
      }),
    ).toBe(3);
    expect(delta('auth_attempts_total', { method: 'api_key', result: 'success' })).toBe(4);
    expect(delta('auth_attempts_total', { method: 'api_key', result: 'failure' })).toBe(1);
    expect(delta('authz_denials_total')).toBe(1);
    expect(sampleSum(after, 'rate_limit_violations_total')).toBe(0);
    // Principals, key ids and request contents never become label values.
    expect(after).not.toMatch(/manager:obs|dvk_/);
  });

  it('counts the forwarded half of a call on the node that answers it', async () => {
    const before = await scrape(cluster.agents[1]);
    const client = cluster.connect(key, cluster.agents[0]);
    const { vms } = await client.vm.listVms({ nodeId: 'node-2' });
    await client.vm.getVm({ uuid: vms[0].spec!.uuid });
    client.close();
    const after = await scrape(cluster.agents[1]);
    expect(
      sampleSum(after, 'auth_attempts_total', { method: 'forwarded', result: 'success' }) -
        sampleSum(before, 'auth_attempts_total', { method: 'forwarded', result: 'success' }),
    ).toBe(2);
    expect(
      sampleSum(after, 'rpc_requests_total', { method: 'GetVm', status: 'OK' }) -
        sampleSum(before, 'rpc_requests_total', { method: 'GetVm', status: 'OK' }),
    ).toBe(1);
  });

  it("exports its certificates' expiry, every service as serving, and the drivers' and Ceph's health", async () => {
    const text = await scrape();
    const config = JSON.parse(readFileSync(cluster.agents[0].configFile, 'utf8')) as {
      tls: { cert: string };
    };
    const expiry = (cert: string) =>
      sampleSum(text, 'debvisor_certificate_expiry_timestamp_seconds', { cert });
    expect(expiry('agent')).toBe(
      Math.floor(Date.parse(new X509Certificate(readFileSync(config.tls.cert)).validTo) / 1000),
    );
    expect(expiry('cluster-ca')).toBe(
      Math.floor(Date.parse(new X509Certificate(cluster.caPem).validTo) / 1000),
    );
    expect(samplesOf(text, 'rpc_service_status').map((s) => [s.labels.service, s.value])).toEqual(
      SERVICES.map((s) => [s, 1]),
    );
    expect(sampleSum(text, 'debvisor_ceph_health_status')).toBe(0);
    expect(
      samplesOf(text, 'debvisor_driver_health_status').map((s) => [s.labels.driver, s.value]),
    ).toEqual([
      ['sim', 0],
      ['sim-rbd', 0],
    ]);
  });

  it('counts a peer agent that does not answer a forwarded call as a backend connection error', async () => {
    const client = cluster.connect(key, cluster.agents[0]);
    const { vms } = await client.vm.listVms({ nodeId: 'node-2' });
    const before = sampleSum(await scrape(), 'backend_connection_errors_total', {
      backend_service: 'agent',
    });
    await cluster.agents[1].kill(); // its lease lives on for a few seconds: node-1 still forwards to it
    try {
      expect((await rpcError(client.vm.getVm({ uuid: vms[0].spec!.uuid }))).code).toBe(
        status.UNAVAILABLE,
      );
      expect(
        sampleSum(await scrape(), 'backend_connection_errors_total', { backend_service: 'agent' }),
      ).toBe(before + 1);
    } finally {
      client.close();
      await cluster.agents[1].restart();
    }
  });
});

describe('the metrics listener with metrics.requireClientCert (real agent)', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startCluster({
      clusterId: 'obs-mtls',
      nodes: 1,
      vmsPerNode: 0,
      metricsRequireClientCert: true,
    });
  });
  afterAll(() => cluster?.stop());

  it('refuses a scraper without a client certificate and serves one with a certificate of a trusted CA', async () => {
    await expect(cluster.scrape()).rejects.toThrow(
      /certificate required|socket hang up|ECONNRESET/i,
    );
    const answer = await cluster.scrape(undefined, { clientCert: true });
    expect(answer.status).toBe(200);
    expect(answer.body).toContain('debvisor_agent_info{cluster="obs-mtls"');
  });
});

describe('gRPC health checking (real agents)', () => {
  let cluster: TestCluster;
  let replacement: EtcdInstance | undefined;
  beforeAll(async () => {
    cluster = await startCluster({ clusterId: 'health', nodes: 1, vmsPerNode: 1 });
  });
  afterAll(async () => {
    await cluster?.stop();
    await replacement?.stop();
  });

  it('answers Check overall and per service, and List, over mutual TLS without an API key', async () => {
    const probe = cluster.connect(undefined);
    try {
      await expect(probe.health.check({ service: '' })).resolves.toEqual({ status: 'SERVING' });
      for (const service of SERVICES)
        await expect(probe.health.check({ service })).resolves.toEqual({ status: 'SERVING' });
      const unknown = await rpcError(probe.health.check({ service: 'debvisor.v1.NoSuchService' }));
      expect(unknown.code).toBe(status.NOT_FOUND);
      const { statuses } = await probe.health.list({});
      expect(Object.keys(statuses).sort()).toEqual(['', ...SERVICES].sort());
    } finally {
      probe.close();
    }
  });

  it('refuses a health check from a client without a certificate', async () => {
    const anonymous = agentClient(cluster.agents[0].endpoint, { caPem: cluster.caPem });
    const error = await rpcError(anonymous.health.check({ service: '' }));
    anonymous.close();
    expect(error.code).toBe(status.UNAVAILABLE);
  });

  it('turns NOT_SERVING while etcd is down and SERVING again once it is back, telling watchers', async () => {
    const probe = cluster.connect(undefined);
    const seen: string[] = [];
    const watch = probe.watchHealth('debvisor.v1.NodeService', (current) => seen.push(current));
    try {
      await eventually(async () => (seen.length === 1 ? true : undefined), 5_000);
      const port = Number(new URL(cluster.etcd.endpoint).port);
      await cluster.etcd.stop();
      await eventually(
        async () =>
          (await probe.health.check({ service: '' })).status === 'NOT_SERVING' ? true : undefined,
        10_000,
      );
      expect((await probe.health.check({ service: 'debvisor.v1.VmService' })).status).toBe(
        'NOT_SERVING',
      );
      const metrics = (await cluster.scrape()).body;
      expect(sampleSum(metrics, 'rpc_service_status')).toBe(0);
      expect(
        sampleSum(metrics, 'backend_connection_errors_total', { backend_service: 'etcd' }),
      ).toBeGreaterThan(0);

      replacement = await startEtcd({ clientPort: port }); // an empty etcd: health checks need no API key
      await eventually(
        async () =>
          (await probe.health.check({ service: '' })).status === 'SERVING' ? true : undefined,
        20_000,
      );
      await eventually(async () => (seen.length >= 3 ? true : undefined), 5_000);
      expect(seen.slice(0, 3)).toEqual(['SERVING', 'NOT_SERVING', 'SERVING']);
    } finally {
      watch.cancel();
      probe.close();
    }
  });
});
