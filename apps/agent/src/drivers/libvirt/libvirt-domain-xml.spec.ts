import { describe, expect, it } from 'vitest';
import type { VmDefinition } from '../hypervisor.driver';
import {
  buildDomainXml,
  DEBVISOR_XML_NAMESPACE,
  parseDomainXml,
  vncSocketOf,
} from './libvirt-domain-xml';
import { child, children, parseXml } from './xml-document';

const MiB = 1024 ** 2;

function fullSpec(overrides: Partial<VmDefinition> = {}): VmDefinition {
  return {
    uuid: '3f0c2a9e-5b7d-4e21-9c88-0d1e2f3a4b5c',
    name: 'web-1.prod',
    vcpus: 4,
    memoryBytes: 2048 * MiB,
    disks: [
      { pool: 'rbd-ssd', image: 'web-1-root', sizeBytes: 20 * 1024 ** 3, bus: 'virtio' },
      { pool: 'rbd-hdd', image: 'web-1.data_2', sizeBytes: 123456789, bus: 'scsi' },
      { pool: 'rbd-hdd', image: 'legacy', sizeBytes: 1, bus: 'sata' },
    ],
    nics: [
      { mac: '52:54:00:12:34:56', bridge: 'br0', model: 'virtio', vlan: 0 },
      { mac: '52:54:00:ab:cd:ef', bridge: 'ovs-trunk', model: 'e1000', vlan: 42 },
    ],
    cpuModel: 'x86-64-v2',
    hugepages: true,
    tenant: 'acme',
    labels: { env: 'prod', note: `quotes ' " <tag> & ampersands, ünïcødé and  spaces `, empty: '' },
    ...overrides,
  };
}

describe('buildDomainXml / parseDomainXml', () => {
  it('reads back exactly the definition it wrote', () => {
    for (const spec of [
      fullSpec(),
      fullSpec({
        disks: [],
        nics: [],
        labels: {},
        tenant: '',
        hugepages: false,
        cpuModel: 'host-model',
      }),
    ]) {
      expect(parseDomainXml(buildDomainXml(spec, { domainType: 'kvm' }))).toEqual(spec);
    }
  });

  it('writes RBD network disks, bridged NICs with VLAN tags over Open vSwitch, hugepages and the CPU model', () => {
    const domain = parseXml(buildDomainXml(fullSpec(), { domainType: 'qemu' }));
    expect(domain.attributes.type).toBe('qemu');
    const devices = child(domain, 'devices');
    const disks = children(devices, 'disk');
    expect(disks.map((d) => child(d, 'source')?.attributes)).toEqual([
      { protocol: 'rbd', name: 'rbd-ssd/web-1-root' },
      { protocol: 'rbd', name: 'rbd-hdd/web-1.data_2' },
      { protocol: 'rbd', name: 'rbd-hdd/legacy' },
    ]);
    expect(disks.map((d) => child(d, 'target')?.attributes)).toEqual([
      { dev: 'vda', bus: 'virtio' },
      { dev: 'sda', bus: 'scsi' },
      { dev: 'sdb', bus: 'sata' },
    ]);
    expect(children(devices, 'controller').map((c) => c.attributes.model)).toEqual(['virtio-scsi']);
    const [plain, tagged] = children(devices, 'interface');
    expect(child(plain, 'vlan')).toBeUndefined();
    expect(child(tagged, 'virtualport')?.attributes.type).toBe('openvswitch');
    expect(child(child(tagged, 'vlan'), 'tag')?.attributes.id).toBe('42');
    expect(child(child(domain, 'memoryBacking'), 'hugepages')).toBeDefined();
    expect(child(domain, 'memory')?.text).toBe(String(2048 * 1024));
    expect(child(child(domain, 'cpu'), 'model')?.text).toBe('x86-64-v2');
    expect(child(domain, 'cpu')?.attributes.mode).toBe('custom');
  });

  it('names disk targets past z as libvirt does', () => {
    const disks = Array.from({ length: 28 }, (_, i) => ({
      pool: 'p',
      image: `i${i}`,
      sizeBytes: i,
      bus: 'virtio' as const,
    }));
    const domain = parseXml(buildDomainXml(fullSpec({ disks }), { domainType: 'kvm' }));
    const targets = children(child(domain, 'devices'), 'disk').map(
      (d) => child(d, 'target')?.attributes.dev,
    );
    expect(targets.slice(24)).toEqual(['vdy', 'vdz', 'vdaa', 'vdab']);
    expect(
      parseDomainXml(buildDomainXml(fullSpec({ disks }), { domainType: 'kvm' }))?.disks,
    ).toEqual(disks);
  });

  it('escapes label values so that they cannot add elements', () => {
    const hostile = `</debvisor:label><debvisor:tenant>evil</debvisor:tenant><x a='`;
    const xml = buildDomainXml(fullSpec({ labels: { k: hostile } }), { domainType: 'kvm' });
    expect(xml).not.toContain('<x ');
    const parsed = parseDomainXml(xml);
    expect(parsed?.labels).toEqual({ k: hostile });
    expect(parsed?.tenant).toBe('acme');
  });

  it.each([
    ['a name with a quote', { name: "web'1" }],
    ['a name with markup', { name: 'web<1>' }],
    ['a name starting with a hyphen', { name: '-c' }],
    [
      'a pool with a slash',
      { disks: [{ pool: 'a/b', image: 'c', sizeBytes: 0, bus: 'virtio' as const }] },
    ],
    [
      'an image with a quote',
      { disks: [{ pool: 'a', image: "c'/>", sizeBytes: 0, bus: 'virtio' as const }] },
    ],
    [
      'a bridge with markup',
      {
        nics: [{ mac: '52:54:00:00:00:01', bridge: "br0'/><x", model: 'virtio' as const, vlan: 0 }],
      },
    ],
    ['a CPU model with markup', { cpuModel: 'qemu64</model>' }],
    ['a label key with a quote', { labels: { "k'": 'v' } }],
    ['a label value with a control character', { labels: { k: 'a\u0000b' } }],
    ['a label value with a line break', { labels: { k: 'a\nb' } }],
    ['a memory size that is not whole KiB', { memoryBytes: 64 * MiB + 1 }],
    [
      'two NICs with one MAC',
      {
        nics: [0, 1].map(() => ({
          mac: '52:54:00:00:00:01',
          bridge: 'br0',
          model: 'virtio' as const,
          vlan: 0,
        })),
      },
    ],
    ['a uuid that is not one', { uuid: "x' or '1" }],
  ])('refuses %s', (_, overrides) => {
    expect(() =>
      buildDomainXml(fullSpec(overrides as Partial<VmDefinition>), { domainType: 'kvm' }),
    ).toThrow(TypeError);
  });

  it('reads the XML libvirt hands back: KiB units, its own prefix for our namespace, added devices', () => {
    const xml = `<domain type='kvm'>
  <name>db-2</name>
  <uuid>0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d</uuid>
  <metadata>
    <other:thing xmlns:other="urn:someone:else"><other:tenant>not-ours</other:tenant></other:thing>
    <ns1:vm xmlns:ns1="${DEBVISOR_XML_NAMESPACE}">
      <ns1:tenant>blue</ns1:tenant>
      <ns1:label key="tier">db &amp; cache</ns1:label>
      <ns1:disk target="vda" size-bytes="1073741824"/>
    </ns1:vm>
  </metadata>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <cpu mode='host-model' check='partial'/>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <!-- a comment -->
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none' discard='unmap'/>
      <source protocol='rbd' name='pool1/db-2-root'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='bridge'>
      <mac address='52:54:00:00:00:02'/>
      <source bridge='br1'/>
      <model type='virtio'/>
    </interface>
    <interface type='network'><source network='default'/></interface>
  </devices>
</domain>`;
    expect(parseDomainXml(xml)).toEqual({
      uuid: '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d',
      name: 'db-2',
      vcpus: 2,
      memoryBytes: 1024 * MiB,
      disks: [{ pool: 'pool1', image: 'db-2-root', sizeBytes: 1024 ** 3, bus: 'virtio' }],
      nics: [{ mac: '52:54:00:00:00:02', bridge: 'br1', model: 'virtio', vlan: 0 }],
      cpuModel: 'host-model',
      hugepages: false,
      tenant: 'blue',
      labels: { tier: 'db & cache' },
    });
  });

  it('answers undefined for a domain our definition cannot describe', () => {
    const foreign = `<domain type='kvm'><name>my vm</name><uuid>0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d</uuid><memory>65536</memory><vcpu>1</vcpu></domain>`;
    expect(parseDomainXml(foreign)).toBeUndefined();
  });

  it('refuses documents with a DOCTYPE or unknown entities rather than expanding them', () => {
    expect(() => parseXml(`<!DOCTYPE d [<!ENTITY x "y">]><domain>&x;</domain>`)).toThrow(/DOCTYPE/);
    expect(() => parseXml('<domain>&x;</domain>')).toThrow(/entity/);
  });
});

describe('the console of a libvirt domain', () => {
  it('finds the VNC unix socket in the live XML, and nothing in a domain without one', () => {
    const live = `<domain><devices>
      <graphics type='vnc' socket='/var/lib/libvirt/qemu/domain-3-web/vnc.sock'>
        <listen type='socket' socket='/var/lib/libvirt/qemu/domain-3-web/vnc.sock'/>
      </graphics></devices></domain>`;
    expect(vncSocketOf(live)).toBe('/var/lib/libvirt/qemu/domain-3-web/vnc.sock');
    expect(
      vncSocketOf("<domain><graphics type='vnc'><listen type='socket'/></graphics></domain>"),
    ).toBeUndefined();
    expect(vncSocketOf("<domain><graphics type='vnc' socket='../x'/></domain>")).toBeUndefined();
  });
});
