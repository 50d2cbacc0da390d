import { describe, expect, it } from 'vitest';
import type { VmDefinition } from '../drivers/hypervisor.driver';
import { sourceSpecCheck } from './migration-target.service';
import { hostOfDataEndpoint } from './migration.service';

describe('migration trust checks', () => {
  it('reads the host of a direct data endpoint, tcp or libvirt', () => {
    expect(hostOfDataEndpoint('')).toBeUndefined();
    expect(hostOfDataEndpoint('tcp:10.0.0.2:49152')).toBe('10.0.0.2');
    expect(hostOfDataEndpoint('tcp:[fd00::2]:49152')).toBe('fd00::2');
    expect(hostOfDataEndpoint('libvirt:qemu+tls://node-2.example/system')).toBe('node-2.example');
    expect(hostOfDataEndpoint('libvirt:qemu+ssh://root@10.0.0.2/system')).toBe('10.0.0.2');
  });

  const spec = {
    uuid: '11111111-2222-4333-8444-555555555555',
    name: 'web-1',
    vcpus: 2,
    memoryBytes: 2 ** 30,
    disks: [{ pool: 'rbd', image: 'web-1-disk0', sizeBytes: 2 ** 33, bus: 'virtio' }],
  } as unknown as VmDefinition;
  const onSource = {
    uuid: spec.uuid,
    name: 'web-1',
    vcpus: 2,
    memoryBytes: 2 ** 30,
    disks: [{ pool: 'rbd', image: 'web-1-disk0' }],
  };

  it("passes the source's own VM and fails a VM elsewhere, unknown, or with other disks", () => {
    expect(sourceSpecCheck(spec, 'node-1', 'node-1', [onSource]).result).toBe('pass');
    expect(sourceSpecCheck(spec, 'node-1', 'node-3', [onSource]).result).toBe('fail');
    expect(sourceSpecCheck(spec, 'node-1', 'node-1', []).result).toBe('fail');
    expect(sourceSpecCheck(spec, '', undefined, [onSource]).result).toBe('fail');
    const otherDisks = { ...onSource, disks: [{ pool: 'rbd', image: 'db-1-disk0' }] };
    expect(sourceSpecCheck(spec, 'node-1', 'node-1', [otherDisks])).toMatchObject({
      result: 'fail',
      name: 'source-spec',
    });
  });
});
