import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../shared/agent-error';
import type { VmDefinition } from '../hypervisor.driver';
import {
  buildQemuArgv,
  qemuCpuArg,
  qemuDefinitionProblem,
  rbdFile,
  type QemuArgvOptions,
} from './qemu-argv';

const paths = {
  qmp: '/var/lib/debvisor/run/u/qmp',
  pidFile: '/var/lib/debvisor/run/u/pid',
  serialLog: '/var/lib/debvisor/run/u/serial.log',
  guestAgent: '/var/lib/debvisor/run/u/qga.sock',
  vnc: '/var/lib/debvisor/run/u/vnc.sock',
};

function spec(overrides: Partial<VmDefinition> = {}): VmDefinition {
  return {
    uuid: '0b7a5e53-8a5c-4e7e-a0f4-4c1d3f5b2a10',
    name: 'web-01',
    vcpus: 2,
    memoryBytes: 512 * 1024 * 1024,
    disks: [],
    nics: [],
    cpuModel: 'x86-64-v2',
    hugepages: false,
    tenant: '',
    labels: {},
    ...overrides,
  };
}

function argv(
  overrides: Partial<VmDefinition> = {},
  options: Partial<QemuArgvOptions> = {},
): string[] {
  return buildQemuArgv({
    spec: spec(overrides),
    config: { accel: 'kvm', machine: 'q35' },
    paths,
    incoming: false,
    ...options,
  });
}

/** The value after each occurrence of `flag`. */
function values(args: string[], flag: string): string[] {
  return args.flatMap((arg, i) => (arg === flag ? [args[i + 1]!] : []));
}

/** The VGA card of the console, then the guest agent's channel. */
const GUEST_AGENT_DEVICES = [
  'VGA',
  'virtio-serial',
  'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
];

describe('QEMU argument vector', () => {
  it('describes the machine, CPU, memory, console and monitor of a VM', () => {
    const args = argv();
    expect(values(args, '-name')).toEqual(['guest=web-01']);
    expect(values(args, '-uuid')).toEqual(['0b7a5e53-8a5c-4e7e-a0f4-4c1d3f5b2a10']);
    expect(values(args, '-machine')).toEqual(['q35,accel=kvm']);
    expect(values(args, '-smp')).toEqual(['2']);
    expect(values(args, '-m')).toEqual(['512M']);
    expect(values(args, '-pidfile')).toEqual([paths.pidFile]);
    expect(values(args, '-chardev')).toEqual([
      `socket,id=qmp,path=${paths.qmp},server=on,wait=off`,
      `file,id=serial0,path=${paths.serialLog}`,
      `socket,id=qga0,path=${paths.guestAgent},server=on,wait=off`,
    ]);
    expect(args).toEqual(expect.arrayContaining(['-nodefaults', '-no-user-config', '-daemonize']));
    expect(args).not.toContain('-incoming');
  });

  it('serves the console over VNC on a unix socket only, never on a network port', () => {
    const args = argv();
    expect(values(args, '-vnc')).toEqual([`unix:${paths.vnc}`]);
    expect(values(args, '-display')).toEqual(['none']);
  });

  it('escapes a comma in the VNC socket path as QemuOpts requires', () => {
    const args = argv({}, { paths: { ...paths, vnc: '/run/a,b/vnc.sock' } });
    expect(values(args, '-vnc')).toEqual(['unix:/run/a,,b/vnc.sock']);
  });

  it('gives every VM a virtio-serial channel for the QEMU guest agent, before its disks and NICs', () => {
    expect(values(argv(), '-device')).toEqual(GUEST_AGENT_DEVICES);
  });

  it('maps CPU levels to enforced qemu64 flag sets and host models to "host" on KVM only', () => {
    expect(qemuCpuArg('x86-64-v2', 'kvm')).toBe(
      'qemu64,+cx16,+lahf-lm,+popcnt,+pni,+sse4.1,+sse4.2,+ssse3,enforce',
    );
    expect(qemuCpuArg('x86-64-v3', 'tcg')).toContain('+avx2,+bmi1');
    expect(qemuCpuArg('x86-64-v4', 'kvm')).toContain('+avx512f');
    expect(qemuCpuArg('host-model', 'kvm')).toBe('host');
    expect(qemuCpuArg('host-passthrough', 'kvm')).toBe('host');
    // TCG has no 'host': a fixed model keeps the VM migratable
    expect(qemuCpuArg('host-model', 'tcg')).toBe(qemuCpuArg('x86-64-v2', 'tcg'));
    expect(qemuCpuArg('EPYC-Milan', 'kvm')).toBe('EPYC-Milan,enforce');
  });

  it('attaches image-directory disks on their buses with boot order and RBD disks by pool and image', () => {
    const disks: VmDefinition['disks'] = [
      { pool: 'fast', image: 'web-01-root', sizeBytes: 1, bus: 'virtio' },
      { pool: 'fast', image: 'web-01-data', sizeBytes: 1, bus: 'scsi' },
      { pool: 'slow', image: 'web-01-old', sizeBytes: 1, bus: 'sata' },
    ];
    const files = argv(
      { disks },
      {
        config: { accel: 'kvm', machine: 'q35', imageDir: '/srv/a,b' },
        diskCache: ['none', 'writeback'],
      },
    );
    expect(values(files, '-drive')).toEqual([
      'file=/srv/a,,b/fast/web-01-root.raw,format=raw,if=none,id=disk0,cache=none,discard=unmap',
      'file=/srv/a,,b/fast/web-01-data.raw,format=raw,if=none,id=disk1,cache=writeback,discard=unmap',
      'file=/srv/a,,b/slow/web-01-old.raw,format=raw,if=none,id=disk2,cache=writeback,discard=unmap',
    ]);
    expect(values(files, '-device').slice(GUEST_AGENT_DEVICES.length)).toEqual([
      'virtio-blk-pci,drive=disk0,id=disk0-dev,bootindex=1',
      'virtio-scsi-pci,id=scsi0',
      'scsi-hd,bus=scsi0.0,drive=disk1,id=disk1-dev,bootindex=2',
      'ide-hd,bus=ide.0,drive=disk2,id=disk2-dev,bootindex=3',
    ]);
    expect(values(argv({ disks: disks.slice(0, 1) }), '-drive')).toEqual([
      'file=rbd:fast/web-01-root,format=raw,if=none,id=disk0,cache=writeback,discard=unmap',
    ]);
  });

  it("opens RBD disks with the agent's cephx user, ceph.conf and keyring, escaped for librbd and QemuOpts", () => {
    const disks = [{ pool: 'fast', image: 'web-01-root', sizeBytes: 1, bus: 'virtio' as const }];
    const rbd = {
      clientId: 'debvisor',
      conf: '/srv/ceph:a,b/ceph.conf',
      keyring: '/etc/ceph/east.client.debvisor.keyring',
    };
    expect(values(argv({ disks }, { rbd }), '-drive')).toEqual([
      'file=rbd:fast/web-01-root:id=debvisor:conf=/srv/ceph\\:a,,b/ceph.conf:keyring=/etc/ceph/east.client.debvisor.keyring,format=raw,if=none,id=disk0,cache=writeback,discard=unmap',
    ]);
    expect(rbdFile('rbd', 'x', { clientId: 'admin' })).toBe('rbd:rbd/x:id=admin');
    expect(rbdFile('rbd', 'x', undefined)).toBe('rbd:rbd/x');
  });

  it('bridges NICs with their MAC and model', () => {
    const args = argv({
      nics: [{ mac: '52:54:00:aa:bb:cc', bridge: 'vmbr0', model: 'virtio', vlan: 0 }],
    });
    expect(values(args, '-netdev')).toEqual(['bridge,id=net0,br=vmbr0']);
    expect(values(args, '-device').slice(GUEST_AGENT_DEVICES.length)).toEqual([
      'virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc,id=net0-dev',
    ]);
  });

  it('boots a kernel from the boot directory when labelled, and waits for a migration when incoming', () => {
    const labels = {
      'qemu-kernel': 'vmlinuz',
      'qemu-initrd': 'initrd.cpio',
      'qemu-append': 'console=ttyS0 quiet dirty_mib_s=8',
    };
    const args = argv(
      { labels },
      { config: { accel: 'tcg', machine: 'q35', bootDir: '/srv/boot' }, incoming: true },
    );
    expect(values(args, '-kernel')).toEqual(['/srv/boot/vmlinuz']);
    expect(values(args, '-initrd')).toEqual(['/srv/boot/initrd.cpio']);
    expect(values(args, '-append')).toEqual(['console=ttyS0 quiet dirty_mib_s=8']);
    expect(args.slice(-3)).toEqual(['-S', '-incoming', 'defer']);
  });

  it('puts hugepage VMs on a hugetlb memory backend', () => {
    const args = argv({ hugepages: true });
    expect(values(args, '-object')).toEqual([
      'memory-backend-memfd,id=ram0,size=512M,hugetlb=on,share=on,prealloc=on',
    ]);
    expect(values(args, '-machine')).toEqual(['q35,accel=kvm,memory-backend=ram0']);
  });

  it.each([
    [
      'a kernel outside the boot directory',
      { labels: { 'qemu-kernel': '../../etc/shadow' } },
      /plain file name/,
    ],
    ['an absolute kernel path', { labels: { 'qemu-kernel': '/boot/vmlinuz' } }, /plain file name/],
    [
      'a hidden initrd name',
      { labels: { 'qemu-kernel': 'vmlinuz', 'qemu-initrd': '..' } },
      /plain file name/,
    ],
    [
      'quotes and a semicolon on the kernel command line',
      { labels: { 'qemu-kernel': 'vmlinuz', 'qemu-append': 'init=/bin/sh"; reboot' } },
      /qemu-append may only hold/,
    ],
    [
      'a newline on the kernel command line',
      { labels: { 'qemu-kernel': 'vmlinuz', 'qemu-append': 'quiet\n-device x' } },
      /qemu-append may only hold/,
    ],
    ['a command line without a kernel', { labels: { 'qemu-append': 'quiet' } }, /need qemu-kernel/],
    [
      'a memory size that is not whole MiB',
      { memoryBytes: 64 * 1024 * 1024 + 1 },
      /whole number of MiB/,
    ],
    [
      'a VLAN tag',
      { nics: [{ mac: '52:54:00:aa:bb:cc', bridge: 'vmbr0', model: 'virtio' as const, vlan: 12 }] },
      /VLAN 12/,
    ],
    [
      'seven SATA disks on q35',
      {
        disks: Array.from({ length: 7 }, (_, i) => ({
          pool: 'p',
          image: `i${i}`,
          sizeBytes: 1,
          bus: 'sata' as const,
        })),
      },
      /6 IDE\/SATA ports/,
    ],
  ])('refuses %s', (_what, overrides, message) => {
    const config = { accel: 'tcg' as const, machine: 'q35', bootDir: '/srv/boot' };
    expect(qemuDefinitionProblem(spec(overrides), config)).toMatch(message);
    expect(() => argv(overrides, { config })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
  });

  it('refuses direct kernel boot where no boot directory is configured', () => {
    expect(
      qemuDefinitionProblem(spec({ labels: { 'qemu-kernel': 'vmlinuz' } }), { machine: 'q35' }),
    ).toMatch(/direct kernel boot is disabled/);
  });
});
