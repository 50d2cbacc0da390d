import { parseAgentApiKey } from '@debvisor/common';
import { startCluster, type AgentClient, type TestCluster } from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

const CACHE_SECONDS = 1;

describe('API keys (real etcd, real agent, admin CLI)', () => {
  let cluster: TestCluster;
  let etcd: Etcd3;
  const clients: AgentClient[] = [];
  const connect = (key?: string) => {
    const client = cluster.connect(key);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    cluster = await startCluster({
      clusterId: 'keys',
      nodes: 1,
      vmsPerNode: 1,
      apiKeyCacheSeconds: CACHE_SECONDS,
    });
    etcd = new Etcd3(cluster.etcd.clientOptions());
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    etcd?.close();
    await cluster?.stop();
  });

  it('refuses a call without a key, with a malformed key, an unknown key or a wrong secret as UNAUTHENTICATED', async () => {
    const key = await cluster.createApiKey(['*']);
    const { id } = parseAgentApiKey(key)!;
    const attempts: [string | undefined, RegExp][] = [
      [undefined, /^missing API key/],
      ['dvk_nonsense', /^invalid API key$/],
      [`dvk_0123456789abcdef_${'A'.repeat(43)}`, /^invalid API key$/],
      [`dvk_${id}_${'A'.repeat(43)}`, /^invalid API key$/],
    ];
    for (const [presented, message] of attempts) {
      const error = await rpcError(connect(presented).node.getHealth({}));
      expect([error.code, error.details]).toEqual([
        status.UNAUTHENTICATED,
        expect.stringMatching(message),
      ]);
    }
    const basic = await rpcError(
      connect().node.getHealth({}, { metadata: { authorization: 'Basic dXNlcjpwYXNz' } }),
    );
    expect([basic.code, basic.details]).toEqual([
      status.UNAUTHENTICATED,
      expect.stringMatching(/malformed authorization/),
    ]);
    await expect(connect(key).node.getHealth({})).resolves.toMatchObject({ status: 'ok' });
  });

  it('refuses a valid key without the RPC permission as PERMISSION_DENIED, naming the permission', async () => {
    const reader = connect(await cluster.createApiKey(['vm:instance:read']));
    const { vms } = await reader.vm.listVms({});
    const error = await rpcError(reader.vm.stopVm({ uuid: vms[0].spec!.uuid }));
    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.details).toBe(
      'VmService.StopVm needs the permission vm:instance:power, which test-manager does not hold',
    );
  });

  it('stops accepting a revoked key within the cache time', async () => {
    const key = await cluster.createApiKey(['node:*']);
    const client = connect(key);
    await client.node.getHealth({});
    const revoke = await cluster.admin(['apikey', 'revoke', parseAgentApiKey(key)!.id]);
    expect(revoke).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Revoked API key/) });
    const { value: error, ms } = await eventually(
      async () => {
        const failure = await client.node.getHealth({}).then(
          () => undefined,
          (e: { code: number; details: string }) => e,
        );
        return failure;
      },
      5_000,
      50,
    );
    expect([error.code, error.details]).toEqual([status.UNAUTHENTICATED, 'API key revoked']);
    expect(ms).toBeLessThanOrEqual(CACHE_SECONDS * 1000 + 500);
    const again = await cluster.admin(['apikey', 'revoke', parseAgentApiKey(key)!.id]);
    expect(again).toMatchObject({ code: 0, stdout: expect.stringMatching(/was already revoked/) });
  });

  it('refuses an expired key', async () => {
    const client = connect(await cluster.createApiKey(['node:*'], { expiresIn: '2s' }));
    const created = Date.now(); // the CLI set the expiry before it returned
    await client.node.getHealth({});
    await new Promise((r) => setTimeout(r, Math.max(0, created + 2_050 - Date.now())));
    const error = await rpcError(client.node.getHealth({}));
    expect([error.code, error.details]).toEqual([status.UNAUTHENTICATED, 'API key expired']);
  });

  it('rotates a key: the new secret works at once, the old one stops within the cache time', async () => {
    const oldKey = await cluster.createApiKey(['node:registry:read']);
    const oldClient = connect(oldKey);
    await oldClient.node.getClusterInfo({});
    const { id } = parseAgentApiKey(oldKey)!;
    const rotated = await cluster.admin(['apikey', 'rotate', id, '--json']);
    expect(rotated.code).toBe(0);
    const { key: newKey, permissions } = JSON.parse(rotated.stdout) as {
      key: string;
      permissions: string[];
    };
    expect(parseAgentApiKey(newKey)!.id).toBe(id);
    expect(newKey).not.toBe(oldKey);
    expect(permissions).toEqual(['node:registry:read']);
    await expect(connect(newKey).node.getClusterInfo({})).resolves.toMatchObject({
      permissions: ['node:registry:read'],
    });
    const { value: error } = await eventually(
      () =>
        oldClient.node.getClusterInfo({}).then(
          () => undefined,
          (e: { code: number; details: string }) => e,
        ),
      3_000,
      50,
    );
    expect([error.code, error.details]).toEqual([status.UNAUTHENTICATED, 'invalid API key']);
  });

  it('lists keys without secrets or hashes, and keeps only the hash of the secret in etcd', async () => {
    const key = await cluster.createApiKey(['vm:*', 'node:registry:read'], {
      principal: 'ci@example.org',
      description: 'nightly pipeline',
    });
    const { id, secret } = parseAgentApiKey(key)!;
    await connect(key).node.getClusterInfo({});

    const listed = await cluster.admin(['apikey', 'list', '--json']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).not.toContain(secret);
    expect(listed.stdout).not.toContain('secretSha256');
    const entry = (JSON.parse(listed.stdout) as Record<string, unknown>[]).find(
      (k) => k.id === id,
    )!;
    expect(entry).toMatchObject({
      principal: 'ci@example.org',
      permissions: ['vm:*', 'node:registry:read'],
      description: 'nightly pipeline',
      revokedAt: null,
      expiresAt: null,
    });
    expect(Date.now() - Date.parse(entry.lastUsedAt as string)).toBeLessThan(30_000);
    const table = await cluster.admin(['apikey', 'list']);
    expect(table.stdout).toMatch(
      new RegExp(`^${id}\\s+ci@example\\.org\\s+active\\s+vm:\\*,node:registry:read`, 'm'),
    );
    expect(table.stdout).not.toContain(secret);

    const stored = await etcd.get(`/debvisor/rpc/apikeys/${id}`).string();
    expect(stored).not.toContain(secret);
    expect(JSON.parse(stored!)).toMatchObject({
      id,
      secretSha256: createHash('sha256').update(secret).digest('hex'),
    });
  });

  it('checks the admin CLI arguments, answering exit code 2 and naming the problem', async () => {
    const cases: [string[], RegExp][] = [
      [['apikey', 'create', '--permissions', 'vm:*'], /--principal is required/],
      [
        ['apikey', 'create', '--principal', 'ci', '--permissions', 'vm:instance'],
        /--permissions: a permission is service:resource:action/,
      ],
      [
        ['apikey', 'create', '--principal', 'ci', '--permissions', '*', '--expires-in', '3 days'],
        /--expires-in: give a duration/,
      ],
      [['apikey', 'revoke', 'xyz'], /the API key id: an API key id is 16 hex digits/],
      [['apikey', 'frobnicate'], /unknown command "frobnicate"/],
    ];
    for (const [args, message] of cases) {
      const result = await cluster.admin(args);
      expect([result.code, result.stderr], args.join(' ')).toEqual([
        2,
        expect.stringMatching(message),
      ]);
    }
    const missing = await cluster.admin(['apikey', 'revoke', '0123456789abcdef']);
    expect([missing.code, missing.stderr]).toEqual([
      1,
      expect.stringMatching(/no API key with id 0123456789abcdef/),
    ]);
  });
});
