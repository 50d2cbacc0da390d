import { verifyFiles, type AuditEntry } from '@debvisor/audit';
import {
  cleanupTempDirs,
  startCluster,
  type AgentClient,
  type TestCluster,
} from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

/** The agents' audit files (audit.file) of the RPCs they serve, with real agents and a real etcd. */
describe('the agent audit file', () => {
  let cluster: TestCluster;
  let key: string;
  let readOnlyKey: string;
  let viaNode1: AgentClient;

  const auditFile = (index: number) => join(cluster.agents[index].stateDir, 'rpc-audit.log');
  const entries = (index: number): AuditEntry[] =>
    existsSync(auditFile(index))
      ? readFileSync(auditFile(index), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as AuditEntry)
      : [];
  /** Waits for entries matching `match` in an agent's file (reads are written in the background). */
  const entry = (index: number, match: (e: AuditEntry) => boolean) =>
    eventually(async () => entries(index).find(match), 10_000).then((found) => found.value);

  beforeAll(async () => {
    cluster = await startCluster({ clusterId: 'audit', nodes: 2, vmsPerNode: 2, auditFile: true });
    [key, readOnlyKey] = await Promise.all([
      cluster.createApiKey(['*'], { principal: 'manager:audit' }),
      cluster.createApiKey(['node:registry:read', 'vm:instance:read'], { principal: 'auditor' }),
    ]);
    viaNode1 = cluster.connect(key, cluster.agents[0]);
  });
  afterAll(async () => {
    viaNode1?.close();
    await cluster?.stop();
    cleanupTempDirs();
  });

  it('records a read with principal, key id, trace id and peer address, never the key', async () => {
    await viaNode1.node.getClusterInfo(
      {},
      { metadata: { 'x-debvisor-trace-id': 'audit-read-0001' } },
    );
    const read = await entry(0, (e) => e.traceId === 'audit-read-0001');
    expect(read).toMatchObject({
      action: 'rpc.NodeService.GetClusterInfo',
      principal: 'manager:audit',
      outcome: 'success',
      target: null,
      source: expect.stringMatching(/127\.0\.0\.1:\d+/),
      details: { keyId: key.split('_')[1], code: 'OK' },
    });
  });

  it('records a change before and after it, on the agent that was called and on the node that carried it out', async () => {
    const [vm] = (await viaNode1.vm.listVms({ nodeId: 'node-2' })).vms;
    const uuid = vm.spec!.uuid;
    const running = vm.runtime!.state === 'running';
    const trace = 'audit-change-0001';
    const options = { metadata: { 'x-debvisor-trace-id': trace } };
    await (running
      ? viaNode1.vm.stopVm({ uuid }, options)
      : viaNode1.vm.startVm({ uuid }, options));
    const rpc = running ? 'rpc.VmService.StopVm' : 'rpc.VmService.StartVm';

    const called = entries(0).filter((e) => e.traceId === trace);
    expect(called.map((e) => [e.action, e.outcome, e.target, e.principal])).toEqual([
      [rpc, 'attempt', `/vms/${uuid}`, 'manager:audit'],
      [rpc, 'success', `/vms/${uuid}`, 'manager:audit'],
    ]);
    // The owning node audits the forwarded call too: the original caller, vouched for by node-1.
    const owner = await entry(1, (e) => e.traceId === trace && e.outcome === 'success');
    expect(owner).toMatchObject({
      action: rpc,
      principal: 'manager:audit',
      target: `/vms/${uuid}`,
      details: { forwardedBy: 'node-1' },
    });
    expect(
      entries(1)
        .filter((e) => e.traceId === trace)
        .map((e) => e.outcome),
    ).toEqual(['attempt', 'success']);
  });

  it('records refused calls: a missing permission and an unknown key, with the key id only', async () => {
    const reader = cluster.connect(readOnlyKey, cluster.agents[0]);
    const forged = cluster.connect(`dvk_0123456789abcdef_${'x'.repeat(43)}`, cluster.agents[0]);
    try {
      const [vm] = (await reader.vm.listVms({ nodeId: 'node-1' })).vms;
      const denied = await rpcError(
        reader.vm.stopVm(
          { uuid: vm.spec!.uuid },
          { metadata: { 'x-debvisor-trace-id': 'audit-denied-0001' } },
        ),
      );
      expect(denied.code).toBe(status.PERMISSION_DENIED);
      const unknown = await rpcError(
        forged.node.getClusterInfo(
          {},
          { metadata: { 'x-debvisor-trace-id': 'audit-unauth-0001' } },
        ),
      );
      expect(unknown.code).toBe(status.UNAUTHENTICATED);
    } finally {
      reader.close();
      forged.close();
    }
    expect(await entry(0, (e) => e.traceId === 'audit-denied-0001')).toMatchObject({
      action: 'rpc.VmService.StopVm',
      principal: 'auditor',
      outcome: 'denied',
      details: {
        keyId: readOnlyKey.split('_')[1],
        code: 'PERMISSION_DENIED',
        reason: expect.stringContaining('needs the permission vm:instance:power'),
      },
    });
    expect(await entry(0, (e) => e.traceId === 'audit-unauth-0001')).toMatchObject({
      action: 'rpc.NodeService.GetClusterInfo',
      principal: null,
      outcome: 'denied',
      details: { keyId: '0123456789abcdef', code: 'UNAUTHENTICATED', reason: 'invalid API key' },
    });
    // No attempt entry for a change that was refused before it started.
    expect(
      entries(0)
        .filter((e) => e.traceId === 'audit-denied-0001')
        .map((e) => e.outcome),
    ).toEqual(['denied']);
  });

  it('keeps one verifiable chain per file, across an agent restart, without any key secret in it', async () => {
    await cluster.agents[0].restart();
    const client = cluster.connect(key, cluster.agents[0]);
    try {
      await client.node.listNodes(
        {},
        { metadata: { 'x-debvisor-trace-id': 'audit-after-restart' } },
      );
    } finally {
      client.close();
    }
    await entry(0, (e) => e.traceId === 'audit-after-restart');
    for (const index of [0, 1]) {
      const report = await verifyFiles([auditFile(index)], { fromGenesis: true });
      expect(report, `node-${index + 1}`).toMatchObject({ ok: true, firstSeq: 1 });
      expect(report.entries).toBe(entries(index).length);
      const text = readFileSync(auditFile(index), 'utf8');
      for (const secret of [key, readOnlyKey].map((k) => k.split('_').slice(2).join('_')))
        expect(text).not.toContain(secret);
      expect(text).not.toContain('x'.repeat(43));
    }
  });
});
