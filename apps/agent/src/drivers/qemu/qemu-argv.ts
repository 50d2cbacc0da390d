import { isAbsolute, join } from 'node:path';
import type { AgentConfig } from '../../config/agent-config.schema';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { VmDefinition } from '../hypervisor.driver';

export type QemuConfig = AgentConfig['qemu'];

/** Labels that select direct kernel boot (files inside qemu.bootDir) and its command line. */
export const KERNEL_LABEL = 'qemu-kernel';
export const INITRD_LABEL = 'qemu-initrd';
export const APPEND_LABEL = 'qemu-append';

/** A plain file name: no path separator, no leading dot (so neither '.' nor '..'). */
const BOOT_FILE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
/** A kernel command line: printable characters that mean nothing to QEMU or a shell; no quotes. */
const KERNEL_APPEND = /^[A-Za-z0-9 _.,:=/+@%-]{0,1024}$/;
const MiB = 1024 * 1024;

/** CPU flags (QEMU names) each x86-64 micro-architecture level adds to qemu64, as the psABI defines them. */
const LEVEL_FLAGS: Record<string, readonly string[]> = {
  'x86-64': [],
  'x86-64-v2': ['cx16', 'lahf-lm', 'popcnt', 'pni', 'sse4.1', 'sse4.2', 'ssse3'],
  'x86-64-v3': ['avx', 'avx2', 'bmi1', 'bmi2', 'f16c', 'fma', 'abm', 'movbe', 'xsave'],
  'x86-64-v4': ['avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl'],
};
const LEVELS = ['x86-64', 'x86-64-v2', 'x86-64-v3', 'x86-64-v4'];
const HOST_MODELS = new Set(['host-model', 'host-passthrough', 'host']);
/** What a host CPU model becomes under TCG, where 'host' does not exist: fixed, so that it migrates. */
const TCG_HOST_EQUIVALENT = 'x86-64-v2';

/** Runtime paths of one VM's QEMU. */
export interface QemuRunPaths {
  qmp: string;
  pidFile: string;
  serialLog: string;
  /** The QEMU guest agent's channel (a unix socket QEMU listens on). */
  guestAgent: string;
  /** The VM's VNC server: a unix socket only the agent reaches (never a network port). */
  vnc: string;
}

/** The virtio-serial port name a QEMU guest agent looks for. */
export const GUEST_AGENT_PORT = 'org.qemu.guest_agent.0';

/** How QEMU's librbd reaches the Ceph cluster (the agent's rbd settings): cephx user, ceph.conf, keyring. */
export interface RbdAccess {
  clientId: string;
  conf?: string;
  keyring?: string;
}

export interface QemuArgvOptions {
  spec: VmDefinition;
  config: Pick<QemuConfig, 'accel' | 'machine' | 'imageDir' | 'bootDir'>;
  /** Disks without an image directory are RBD images, opened with these settings (unset: librbd's defaults). */
  rbd?: RbdAccess;
  paths: QemuRunPaths;
  /** Per disk of an image directory: 'none' (O_DIRECT) where its file system supports it, else 'writeback' (the default). */
  diskCache?: ReadonlyArray<'none' | 'writeback'>;
  /** Start paused, waiting for migrate-incoming. */
  incoming: boolean;
}

/**
 * Why this VM cannot run under the qemu driver with this configuration, or undefined. Checks what
 * the definition schema does not: direct boot labels, disk buses for the machine, memory size, VLANs.
 */
export function qemuDefinitionProblem(
  spec: VmDefinition,
  config: Pick<QemuConfig, 'machine' | 'bootDir'>,
): string | undefined {
  if (spec.memoryBytes % MiB !== 0) return 'the memory size must be a whole number of MiB';
  const kernel = spec.labels[KERNEL_LABEL];
  const initrd = spec.labels[INITRD_LABEL];
  const append = spec.labels[APPEND_LABEL];
  if (kernel !== undefined || initrd !== undefined || append !== undefined) {
    if (!config.bootDir)
      return 'direct kernel boot is disabled on this node (qemu.bootDir is not set)';
    if (kernel === undefined) return `${INITRD_LABEL} and ${APPEND_LABEL} need ${KERNEL_LABEL}`;
    for (const [label, value] of [
      [KERNEL_LABEL, kernel],
      [INITRD_LABEL, initrd],
    ] as const) {
      if (value !== undefined && !BOOT_FILE.test(value))
        return `${label} must be a plain file name inside the boot directory (letters, digits, . _ + -; no '/')`;
    }
    if (append !== undefined && !KERNEL_APPEND.test(append))
      return `${APPEND_LABEL} may only hold letters, digits, spaces and _ . , : = / + @ % - (at most 1024)`;
  }
  const ide = spec.disks.filter((d) => d.bus === 'sata' || d.bus === 'ide').length;
  const ports = idePorts(config.machine);
  if (ide > ports) {
    return ports === 0
      ? `machine type ${config.machine} has no IDE/SATA controller the qemu driver knows; use virtio or scsi disks`
      : `machine type ${config.machine} has ${ports} IDE/SATA ports; the VM has ${ide} such disks`;
  }
  const tagged = spec.nics.find((n) => n.vlan !== 0);
  if (tagged)
    return `NIC ${tagged.mac} has VLAN ${tagged.vlan}; the qemu driver attaches NICs to bridges untagged only (use a bridge per VLAN)`;
  return undefined;
}

/** The -cpu value for a VM's CPU model. Named levels and models are enforced: a host that lacks a flag refuses to start rather than silently giving the guest another CPU. */
export function qemuCpuArg(cpuModel: string, accel: QemuConfig['accel']): string {
  if (HOST_MODELS.has(cpuModel)) {
    if (accel === 'kvm') return 'host';
    cpuModel = TCG_HOST_EQUIVALENT;
  }
  const level = LEVELS.indexOf(cpuModel);
  if (level >= 0) {
    const flags = LEVELS.slice(0, level + 1).flatMap((name) => LEVEL_FLAGS[name] ?? []);
    return ['qemu64', ...flags.map((f) => `+${f}`), 'enforce'].join(',');
  }
  return `${cpuModel},enforce`;
}

/** Whether a CPU model needs QEMU to know it by name (levels and host models are mapped by the driver). */
export function isNamedQemuCpuModel(cpuModel: string): boolean {
  return !HOST_MODELS.has(cpuModel) && !LEVELS.includes(cpuModel);
}

/** Path of a disk image file under qemu.imageDir. */
export function imagePath(imageDir: string, pool: string, image: string): string {
  return join(imageDir, pool, `${image}.raw`);
}

/**
 * QEMU's argument vector for a VM. Everything variable was validated (schema + qemuDefinitionProblem);
 * paths that reach QemuOpts values have commas doubled, the QemuOpts escape.
 */
export function buildQemuArgv(options: QemuArgvOptions): string[] {
  const { spec, config, paths } = options;
  const problem = qemuDefinitionProblem(spec, config);
  if (problem)
    throw new AgentError(
      ErrorCode.InvalidArgument,
      `VM ${spec.name} cannot run on QEMU: ${problem}`,
    );
  for (const path of [paths.qmp, paths.pidFile, paths.serialLog, paths.guestAgent, paths.vnc]) {
    if (!isAbsolute(path))
      throw new AgentError(ErrorCode.Internal, 'QEMU runtime paths must be absolute');
  }
  const memoryMib = spec.memoryBytes / MiB;
  const machine = [`${config.machine}`, `accel=${config.accel}`];
  const argv: string[] = [
    '-name',
    `guest=${spec.name}`,
    '-uuid',
    spec.uuid,
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    // The console: a standard VGA card whose screen QEMU serves over VNC on a unix socket.
    '-device',
    'VGA',
    '-vnc',
    `unix:${opt(paths.vnc)}`,
    '-daemonize',
    '-pidfile',
    paths.pidFile,
    '-chardev',
    `socket,id=qmp,path=${opt(paths.qmp)},server=on,wait=off`,
    '-mon',
    'chardev=qmp,mode=control',
    '-chardev',
    `file,id=serial0,path=${opt(paths.serialLog)}`,
    '-serial',
    'chardev:serial0',
    // The guest agent's channel: freezes the guest's filesystems for snapshots when the guest runs an agent.
    '-chardev',
    `socket,id=qga0,path=${opt(paths.guestAgent)},server=on,wait=off`,
    '-device',
    'virtio-serial',
    '-device',
    `virtserialport,chardev=qga0,name=${GUEST_AGENT_PORT}`,
    '-cpu',
    qemuCpuArg(spec.cpuModel, config.accel),
    '-smp',
    String(spec.vcpus),
    '-m',
    `${memoryMib}M`,
  ];
  if (spec.hugepages) {
    argv.push(
      '-object',
      `memory-backend-memfd,id=ram0,size=${memoryMib}M,hugetlb=on,share=on,prealloc=on`,
    );
    machine.push('memory-backend=ram0');
  }
  argv.push('-machine', machine.join(','));
  argv.push(...diskArgs(options));
  argv.push(...nicArgs(spec));
  argv.push(...bootArgs(spec, config.bootDir));
  if (options.incoming) argv.push('-S', '-incoming', 'defer');
  return argv;
}

function diskArgs({ spec, config, diskCache = [], rbd }: QemuArgvOptions): string[] {
  const argv: string[] = [];
  let scsi = false;
  let idePort = 0;
  const ide = isQ35(config.machine) ? 'ahci' : 'piix';
  spec.disks.forEach((disk, index) => {
    const id = `disk${index}`;
    const file = config.imageDir
      ? opt(imagePath(config.imageDir, disk.pool, disk.image))
      : opt(rbdFile(disk.pool, disk.image, rbd));
    // librbd has its own cache, which QEMU's writeback mode turns on
    const cache = config.imageDir ? (diskCache[index] ?? 'writeback') : 'writeback';
    argv.push('-drive', `file=${file},format=raw,if=none,id=${id},cache=${cache},discard=unmap`);
    const boot = `bootindex=${index + 1}`;
    switch (disk.bus) {
      case 'virtio':
        argv.push('-device', `virtio-blk-pci,drive=${id},id=${id}-dev,${boot}`);
        break;
      case 'scsi':
        if (!scsi) argv.push('-device', 'virtio-scsi-pci,id=scsi0');
        scsi = true;
        argv.push('-device', `scsi-hd,bus=scsi0.0,drive=${id},id=${id}-dev,${boot}`);
        break;
      case 'sata':
      case 'ide': {
        const port = idePort++;
        // q35: one AHCI bus per port (ide.0-ide.5); pc: two IDE buses with two units each
        const bus = ide === 'ahci' ? `bus=ide.${port}` : `bus=ide.${port >> 1},unit=${port & 1}`;
        argv.push('-device', `ide-hd,${bus},drive=${id},id=${id}-dev,${boot}`);
        break;
      }
    }
  });
  return argv;
}

const NIC_DEVICES: Record<VmDefinition['nics'][number]['model'], string> = {
  virtio: 'virtio-net-pci',
  e1000: 'e1000',
  rtl8139: 'rtl8139',
};

function nicArgs(spec: VmDefinition): string[] {
  return spec.nics.flatMap((nic, index) => [
    '-netdev',
    `bridge,id=net${index},br=${nic.bridge}`,
    '-device',
    `${NIC_DEVICES[nic.model]},netdev=net${index},mac=${nic.mac},id=net${index}-dev`,
  ]);
}

function bootArgs(spec: VmDefinition, bootDir: string | undefined): string[] {
  const kernel = spec.labels[KERNEL_LABEL];
  if (kernel === undefined || !bootDir) return [];
  const argv = ['-kernel', join(bootDir, kernel)];
  const initrd = spec.labels[INITRD_LABEL];
  if (initrd !== undefined) argv.push('-initrd', join(bootDir, initrd));
  const append = spec.labels[APPEND_LABEL];
  if (append !== undefined) argv.push('-append', append);
  return argv;
}

/** The boot files a VM needs (to check that they exist before starting). */
export function bootFiles(spec: VmDefinition, bootDir: string | undefined): string[] {
  if (!bootDir) return [];
  return [spec.labels[KERNEL_LABEL], spec.labels[INITRD_LABEL]]
    .filter((f): f is string => f !== undefined)
    .map((f) => join(bootDir, f));
}

function isQ35(machine: string): boolean {
  return machine === 'q35' || machine.startsWith('pc-q35-');
}

function idePorts(machine: string): number {
  if (isQ35(machine)) return 6;
  if (machine === 'pc' || machine.startsWith('pc-i440fx-')) return 4;
  return 0;
}

/**
 * QEMU's rbd filename: rbd:<pool>/<image>[:key=value…], where librbd reads id, conf and keyring;
 * a backslash escapes ':' and '\\' inside values. Pool and image are labels (nothing to escape).
 */
export function rbdFile(pool: string, image: string, rbd: RbdAccess | undefined): string {
  const options: [string, string | undefined][] = rbd
    ? [
        ['id', rbd.clientId],
        ['conf', rbd.conf],
        ['keyring', rbd.keyring],
      ]
    : [];
  const given = options.filter((option): option is [string, string] => option[1] !== undefined);
  return [
    `rbd:${pool}/${image}`,
    ...given.map(([key, value]) => `${key}=${value.replace(/[\\:]/g, (c) => `\\${c}`)}`),
  ].join(':');
}

/** A value inside a QemuOpts list: a comma is written twice. */
function opt(value: string): string {
  return value.replaceAll(',', ',,');
}
