import { describe, expect, it } from 'vitest';
import { debvisorV1, grpcHealthV1 } from './index';

describe('the agent contract', () => {
  it('declares every RPC the architecture names', () => {
    const v1 = debvisorV1();
    const methods = Object.values(v1)
      .filter(
        (entry): entry is typeof v1.NodeService =>
          typeof entry === 'function' && 'service' in entry,
      )
      .flatMap((service) => Object.keys(service.service));
    for (const rpc of [
      'RegisterNode',
      'Heartbeat',
      'ListNodes',
      'PrepareMigration',
      'MigrateVm',
      'FailoverVm',
      'SnapshotRbd',
      'RollbackRbd',
      'SyncUsersGroups',
      'ListVms',
      'GetVm',
      'StartVm',
      'ShutdownVm',
      'RebootVm',
      'StopVm',
      'EnableMirroring',
      'GetMirrorStatus',
      'PromoteImage',
      'DemoteImage',
      'ResyncImage',
      'GetHealth',
    ]) {
      expect(methods, rpc).toContain(rpc);
    }
  });

  it('streams migration progress from the server and the tunnel both ways', () => {
    const migration = debvisorV1().MigrationService.service;
    expect(migration.MigrateVm).toMatchObject({ requestStream: false, responseStream: true });
    expect(migration.Tunnel).toMatchObject({ requestStream: true, responseStream: true });
  });

  it('round-trips a message with the loader options the generated types assume (longs as strings)', () => {
    const listVms = debvisorV1().VmService.service.ListVms;
    const bytes = listVms.responseSerialize({
      vms: [{ spec: { uuid: 'u', memoryBytes: '8589934592' } }],
    });
    const decoded = listVms.responseDeserialize(bytes);
    expect(decoded.vms[0].spec!.memoryBytes).toBe('8589934592');
    expect(decoded.unreachableNodes).toEqual({});
  });

  it("serves gRPC's standard health checking protocol under its canonical name", () => {
    const health = grpcHealthV1().Health.service;
    expect(health.Check.path).toBe('/grpc.health.v1.Health/Check');
    expect(health.Watch).toMatchObject({ requestStream: false, responseStream: true });
    const bytes = health.Check.responseSerialize({ status: 'NOT_SERVING' });
    expect([...bytes]).toEqual([0x08, 0x02]);
    expect(health.Check.responseDeserialize(bytes).status).toBe('NOT_SERVING');
  });
});
