import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A VM definition as the agent's drivers keep it (VmDefinition in apps/agent). */
export interface TestVmSpec {
  uuid: string;
  name: string;
  vcpus: number;
  memoryBytes: number;
  disks: {
    pool: string;
    image: string;
    sizeBytes: number;
    bus: 'virtio' | 'scsi' | 'sata' | 'ide';
  }[];
  nics: { mac: string; bridge: string; model: 'virtio' | 'e1000' | 'rtl8139'; vlan: number }[];
  cpuModel: string;
  hugepages: boolean;
  tenant: string;
  labels: Record<string, string>;
}

/**
 * Defines a stopped VM on a qemu-driver node before its agent starts, as the qemu driver stores it
 * (apps/agent/src/drivers/qemu/qemu-state.repository.ts): the agent API has no call that creates VMs.
 */
export function writeQemuVm(stateDir: string, spec: TestVmSpec): void {
  const dir = join(stateDir, 'qemu');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const record = {
    version: 1,
    spec,
    phase: 'defined',
    state: 'stopped',
    stateChangedAt: new Date().toISOString(),
    bootedAt: null,
  };
  writeFileSync(join(dir, `${spec.uuid}.json`), JSON.stringify(record, null, 2) + '\n', {
    mode: 0o600,
  });
}
