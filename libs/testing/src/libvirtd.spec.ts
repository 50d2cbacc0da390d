import { existsSync, readlinkSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLibvirtd, type LibvirtdInstance } from './libvirtd';

const GUEST = (uuid: string) => `<domain type='qemu'>
  <name>harness-guest</name>
  <uuid>${uuid}</uuid>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>`;

describe('startLibvirtd', () => {
  let libvirt: LibvirtdInstance;
  beforeAll(async () => {
    libvirt = await startLibvirtd();
  });
  afterAll(() => libvirt?.stop());

  it('answers virsh on its own socket with its own host UUID', async () => {
    expect(libvirt.uri).toBe(`qemu+unix:///system?socket=${libvirt.dir}/sock/libvirt-sock`);
    expect(await libvirt.virsh(['version'])).toMatch(/Running hypervisor: QEMU/);
    expect((await libvirt.virsh(['capabilities'])).match(/<uuid>([^<]+)<\/uuid>/)?.[1]).toBe(
      libvirt.hostUuid,
    );
  });

  it('keeps its state out of the system directories', async () => {
    expect(readlinkSync(`/proc/${libvirt.process.child.pid}/ns/mnt`)).not.toBe(
      readlinkSync('/proc/self/ns/mnt'),
    );
    const uuid = '7d1d8c1a-3c55-4b8e-9d7a-1f2e3d4c5b6a';
    const file = `${libvirt.dir}/guest.xml`;
    await writeFile(file, GUEST(uuid));
    await libvirt.virsh(['define', '--', file]);
    expect(existsSync(`${libvirt.dir}/etc/qemu/harness-guest.xml`)).toBe(true);
    expect(existsSync('/etc/libvirt/qemu/harness-guest.xml')).toBe(false);
    await libvirt.virsh(['undefine', '--', uuid]);
  });

  it('destroys running guests, stops the daemon and removes its directory when stopped', async () => {
    const other = await startLibvirtd();
    const uuid = '0b6f3e52-8a2d-4c1e-b7f4-5d9a0c3e2f18';
    const file = `${other.dir}/guest.xml`;
    await writeFile(file, GUEST(uuid));
    await other.virsh(['define', '--', file]);
    await other.virsh(['start', '--', uuid]);
    const pid = await qemuPid(other, 'harness-guest');
    expect(pid).toBeGreaterThan(1);
    await other.stop();
    expect(other.process.child.exitCode ?? other.process.child.signalCode).not.toBeNull();
    expect(existsSync(other.dir)).toBe(false);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
  });
});

/** The QEMU process of a running domain, from its pid file in the daemon's namespace. */
async function qemuPid(libvirt: LibvirtdInstance, name: string): Promise<number> {
  return Number(
    (
      await readFile(`/proc/${libvirt.process.child.pid}/root/run/libvirt/qemu/${name}.pid`, 'utf8')
    ).trim(),
  );
}
