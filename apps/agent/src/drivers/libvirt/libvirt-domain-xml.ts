import { vmDefinitionSchema, type VmDefinition } from '../hypervisor.driver';
import { child, children, escapeXml, parseXml, type XmlElement } from './xml-document';

/** Our namespace inside <metadata>: what the domain XML itself has no place for (tenant, labels, disk sizes). */
export const DEBVISOR_XML_NAMESPACE = 'urn:debvisor:vm:1';
const PREFIX = 'debvisor';

const DISK_PREFIX: Record<VmDefinition['disks'][number]['bus'], string> = {
  virtio: 'vd',
  scsi: 'sd',
  sata: 'sd',
  ide: 'hd',
};
const CPU_MODES = new Set(['host-model', 'host-passthrough', 'maximum']);
/** Characters XML 1.0 cannot carry at all (not even as &#…;), and the control characters we refuse in values. */
// eslint-disable-next-line no-control-regex
const UNSAFE_CHARACTERS = /[\u0000-\u001f\u007f\ud800-\udfff\ufffe\uffff]/;

export interface DomainXmlOptions {
  /** 'kvm', or 'qemu' for TCG where /dev/kvm is missing. */
  domainType: 'kvm' | 'qemu';
}

/**
 * The libvirt domain XML of a VM. Every value is escaped; the definition is validated first, so
 * that names, pools, images, bridges and models are the plain tokens the schema allows, and label
 * values without control characters. Throws TypeError naming the first problem.
 *
 * Disks are RBD network disks (pool/image) with no <host> or <auth>: librbd takes the monitors and
 * the key from the host's /etc/ceph (ceph.conf and the client keyring). NICs join Linux bridges; a
 * VLAN tag needs an Open vSwitch bridge (libvirt tags only through OVS), so a NIC with vlan > 0 gets
 * <virtualport type='openvswitch'/>.
 */
export function buildDomainXml(input: VmDefinition, options: DomainXmlOptions): string {
  const spec = validDefinition(input);
  const lines: string[] = [];
  const add = (line: string) => lines.push(line);
  add(`<domain type='${options.domainType}'>`);
  add(`  <name>${escapeXml(spec.name)}</name>`);
  add(`  <uuid>${escapeXml(spec.uuid)}</uuid>`);
  add('  <metadata>');
  add(`    <${PREFIX}:vm xmlns:${PREFIX}='${DEBVISOR_XML_NAMESPACE}'>`);
  add(`      <${PREFIX}:tenant>${escapeXml(spec.tenant)}</${PREFIX}:tenant>`);
  for (const [key, value] of Object.entries(spec.labels).sort(([a], [b]) => a.localeCompare(b))) {
    add(`      <${PREFIX}:label key='${escapeXml(key)}'>${escapeXml(value)}</${PREFIX}:label>`);
  }
  const targets = diskTargets(spec.disks);
  spec.disks.forEach((disk, i) =>
    add(`      <${PREFIX}:disk target='${targets[i]}' size-bytes='${disk.sizeBytes}'/>`),
  );
  add(`    </${PREFIX}:vm>`);
  add('  </metadata>');
  add(`  <memory unit='KiB'>${spec.memoryBytes / 1024}</memory>`);
  add(`  <currentMemory unit='KiB'>${spec.memoryBytes / 1024}</currentMemory>`);
  add(`  <vcpu placement='static'>${spec.vcpus}</vcpu>`);
  if (spec.hugepages) add('  <memoryBacking><hugepages/></memoryBacking>');
  add("  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>");
  add('  <features><acpi/><apic/></features>');
  if (CPU_MODES.has(spec.cpuModel)) add(`  <cpu mode='${spec.cpuModel}'/>`);
  else
    add(
      `  <cpu mode='custom' match='exact'><model fallback='forbid'>${escapeXml(spec.cpuModel)}</model></cpu>`,
    );
  add("  <clock offset='utc'/>");
  add('  <on_poweroff>destroy</on_poweroff>');
  add('  <on_reboot>restart</on_reboot>');
  add('  <on_crash>destroy</on_crash>');
  add('  <devices>');
  if (spec.disks.some((d) => d.bus === 'scsi'))
    add("    <controller type='scsi' index='0' model='virtio-scsi'/>");
  spec.disks.forEach((disk, i) => {
    add("    <disk type='network' device='disk'>");
    add("      <driver name='qemu' type='raw' cache='none' discard='unmap'/>");
    add(`      <source protocol='rbd' name='${escapeXml(`${disk.pool}/${disk.image}`)}'/>`);
    add(`      <target dev='${targets[i]}' bus='${disk.bus}'/>`);
    add('    </disk>');
  });
  for (const nic of spec.nics) {
    add("    <interface type='bridge'>");
    add(`      <mac address='${escapeXml(nic.mac)}'/>`);
    add(`      <source bridge='${escapeXml(nic.bridge)}'/>`);
    if (nic.vlan > 0)
      add(`      <virtualport type='openvswitch'/><vlan><tag id='${nic.vlan}'/></vlan>`);
    add(`      <model type='${nic.model}'/>`);
    add('    </interface>');
  }
  add("    <serial type='pty'><target port='0'/></serial>");
  add("    <console type='pty'><target type='serial' port='0'/></console>");
  // The console: VNC on a unix socket libvirt picks (never a network port), a VGA card to show.
  add("    <graphics type='vnc'><listen type='socket'/></graphics>");
  add("    <video><model type='vga'/></video>");
  // The QEMU guest agent's channel (libvirt picks the socket): domfsfreeze/domfsthaw for snapshots.
  add("    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>");
  add("    <memballoon model='virtio'/>");
  add('  </devices>');
  add('</domain>');
  return `${lines.join('\n')}\n`;
}

/**
 * The VM definition in a domain XML as `virsh dumpxml --inactive` prints it (libvirt adds defaults
 * and normalizes units). Undefined when the domain is not one a VmDefinition can describe (a name
 * or model outside our schema: a domain someone else defined); disks other than RBD and NICs other
 * than bridges are left out.
 */
export function parseDomainXml(xml: string): VmDefinition | undefined {
  const domain = parseXml(xml);
  if (domain.name !== 'domain') return undefined;
  const meta = ourMetadata(child(domain, 'metadata'));
  const sizes = new Map(
    children(meta.element, meta.name('disk')).map((d) => [
      d.attributes.target,
      Number(d.attributes['size-bytes']),
    ]),
  );
  const memory = child(domain, 'memory');
  const cpu = child(domain, 'cpu');
  const cpuMode = cpu?.attributes.mode ?? 'custom';
  const candidate = {
    uuid: text(child(domain, 'uuid')),
    name: text(child(domain, 'name')),
    vcpus: Number(text(child(domain, 'vcpu'))),
    memoryBytes: memory ? toBytes(Number(text(memory)), memory.attributes.unit ?? 'KiB') : NaN,
    disks: children(child(domain, 'devices'), 'disk')
      .filter(
        (d) =>
          d.attributes.type === 'network' &&
          (d.attributes.device ?? 'disk') === 'disk' &&
          child(d, 'source')?.attributes.protocol === 'rbd',
      )
      .map((d) => {
        const [pool, ...image] = (child(d, 'source')?.attributes.name ?? '').split('/');
        const target = child(d, 'target')?.attributes ?? {};
        return {
          pool,
          image: image.join('/'),
          sizeBytes: sizes.get(target.dev) ?? 0,
          bus: target.bus ?? 'virtio',
        };
      }),
    nics: children(child(domain, 'devices'), 'interface')
      .filter((n) => n.attributes.type === 'bridge')
      .map((n) => ({
        mac: child(n, 'mac')?.attributes.address ?? '',
        bridge: child(n, 'source')?.attributes.bridge ?? '',
        model: child(n, 'model')?.attributes.type ?? 'rtl8139',
        vlan: Number(child(child(n, 'vlan'), 'tag')?.attributes.id ?? 0),
      })),
    cpuModel: CPU_MODES.has(cpuMode) ? cpuMode : text(child(cpu, 'model')) || 'qemu64',
    hugepages: child(child(domain, 'memoryBacking'), 'hugepages') !== undefined,
    tenant: text(child(meta.element, meta.name('tenant'))),
    labels: Object.fromEntries(
      children(meta.element, meta.name('label')).map((l) => [l.attributes.key ?? '', l.text]),
    ),
  };
  const parsed = vmDefinitionSchema.safeParse(candidate);
  return parsed.success ? parsed.data : undefined;
}

/** A definition the schema accepts and the domain XML can carry; throws TypeError otherwise. */
function validDefinition(input: VmDefinition): VmDefinition {
  const parsed = vmDefinitionSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TypeError(`${issue?.path.join('.') || 'definition'}: ${issue?.message}`);
  }
  const spec = parsed.data;
  if (spec.memoryBytes % 1024 !== 0)
    throw new TypeError('memoryBytes: libvirt keeps memory in KiB; give a whole number of KiB');
  for (const [key, value] of Object.entries(spec.labels)) {
    if (UNSAFE_CHARACTERS.test(value))
      throw new TypeError(`labels.${key}: a label value may not hold control characters`);
  }
  const macs = new Set(spec.nics.map((n) => n.mac));
  if (macs.size !== spec.nics.length)
    throw new TypeError('nics: two NICs have the same MAC address');
  return spec;
}

/** Target device names as libvirt numbers them per prefix: vda … vdz, vdaa …; sd shared by scsi and sata. */
function diskTargets(disks: VmDefinition['disks']): string[] {
  const counters = new Map<string, number>();
  return disks.map((disk) => {
    const prefix = DISK_PREFIX[disk.bus];
    const index = counters.get(prefix) ?? 0;
    counters.set(prefix, index + 1);
    return `${prefix}${diskLetters(index)}`;
  });
}

function diskLetters(index: number): string {
  let letters = '';
  for (let i = index + 1; i > 0; i = Math.floor((i - 1) / 26))
    letters = String.fromCharCode(97 + ((i - 1) % 26)) + letters;
  return letters;
}

/** Our element inside <metadata>, found by its namespace whatever prefix libvirt kept. */
function ourMetadata(metadata: XmlElement | undefined): {
  element: XmlElement | undefined;
  name: (local: string) => string;
} {
  for (const element of metadata?.children ?? []) {
    const [prefix, local] = element.name.includes(':')
      ? element.name.split(':')
      : ['', element.name];
    const declared = prefix ? element.attributes[`xmlns:${prefix}`] : element.attributes.xmlns;
    if (local === 'vm' && declared === DEBVISOR_XML_NAMESPACE)
      return { element, name: (n) => (prefix ? `${prefix}:${n}` : n) };
  }
  return { element: undefined, name: (n) => n };
}

function text(element: XmlElement | undefined): string {
  return element?.text.trim() ?? '';
}

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
};

function toBytes(value: number, unit: string): number {
  return value * (UNIT_BYTES[unit.toLowerCase()] ?? NaN);
}

/** The unix socket of a running domain's VNC server, from its live XML (undefined when it has none). */
export function vncSocketOf(liveXml: string): string | undefined {
  const graphics = /<graphics\b[^>]*\btype=['"]vnc['"][\s\S]*?(?:<\/graphics>|\/>)/.exec(
    liveXml,
  )?.[0];
  const path = graphics && /\bsocket=['"]([^'"]+)['"]/.exec(graphics)?.[1];
  return path && path.startsWith('/') && !path.includes('..') ? path : undefined;
}
