import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collectProcessMetrics, grpcStatusName, rpcLabels, RpcMetrics } from './rpc-metrics';

describe('the RPC guide metrics', () => {
  it('names gRPC statuses, and calls anything unknown UNKNOWN so that the label stays bounded', () => {
    expect([grpcStatusName(0), grpcStatusName(14), grpcStatusName(16), grpcStatusName(99)]).toEqual(
      ['OK', 'UNAVAILABLE', 'UNAUTHENTICATED', 'UNKNOWN'],
    );
  });

  it('labels an RPC with its fully qualified service and its method', () => {
    expect(rpcLabels('VmService.StartVm')).toEqual({
      service: 'debvisor.v1.VmService',
      method: 'StartVm',
    });
  });

  it('starts the authentication and backend counters at zero for every known method and backend', async () => {
    const registry = new Registry();
    const metrics = new RpcMetrics(registry, { authMethods: ['api_key'], backends: ['etcd'] });
    metrics.observeCall('debvisor.v1.NodeService', 'ListNodes', 14, 0.2);
    const text = await registry.metrics();
    expect(text).toContain('auth_attempts_total{method="api_key",result="failure"} 0');
    expect(text).toContain('backend_connection_errors_total{backend_service="etcd"} 0');
    expect(text).toContain(
      'rpc_requests_total{service="debvisor.v1.NodeService",method="ListNodes",status="UNAVAILABLE"} 1',
    );
    expect(text).toContain('rate_limit_violations_total 0');
  });

  it("collects the process metrics without prom-client's gauges whose names end in _total", async () => {
    const registry = new Registry();
    collectProcessMetrics(registry);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE nodejs_active_handles gauge');
    expect(text).not.toMatch(/nodejs_active_(handles|requests|resources)_total/);
  });
});
