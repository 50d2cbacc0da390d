import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { requireBinary } from './binaries';

/** Printed on the serial console when something in the guest's loop failed (e.g. tmpfs full). */
export const TINY_GUEST_ERROR = 'DEBVISOR-GUEST ERROR';
/** Printed once on the serial console when the guest's loop starts. */
export const TINY_GUEST_READY = 'DEBVISOR-GUEST READY';
/** Heartbeat printed about once a second: `DEBVISOR-GUEST TICK <n>`, n counting from 1. */
export const TINY_GUEST_TICK = 'DEBVISOR-GUEST TICK';

export interface TinyGuest {
  /**
   * The host's newest kernel, world-readable (a QEMU run by libvirt as another user can read it):
   * its unpacked ELF vmlinux, booted through the PVH entry, or else the bzImage itself.
   */
  kernelPath: string;
  /** Uncompressed newc initramfs: busybox and /init. */
  initrdPath: string;
  /** The cache directory holding both; shared between test files, never delete it from a test. */
  dir: string;
}

export interface TinyGuestSources {
  /** Where to look for vmlinuz-*; /boot by default. */
  bootDir?: string;
  /** The statically linked busybox; /bin/busybox (Debian's busybox-static) by default. */
  busyboxPath?: string;
  /** Parent of the cache directory; os.tmpdir() by default. */
  cacheRoot?: string;
}

export interface TinyGuestLoad {
  /** MiB the guest rewrites every second; 0 idles (heartbeat only). */
  dirtyMibPerSecond: number;
  /** Size of the rewritten area in MiB (default 64); with 17 MiB of random source it must fit in the tmpfs, half the guest's memory. */
  workingSetMib?: number;
}

/** MiB one dd call rewrites at most; bounds the guest memory the random source takes. */
const CHUNK_MIB = 16;

/**
 * PID 1. Every second the loop rewrites `dirty_mib_s` MiB of a `dirty_mib` MiB tmpfs file, in
 * order and wrapping around, then sleeps off the rest of the second (measured on /proc/uptime;
 * when it cannot keep up it ticks later). The data comes from a file of random bytes read at a
 * byte offset that moves on every dd call, so no page is ever zero (QEMU would send a zero page as
 * a flag) and no page gets the same content twice running (content-based dirty-rate sampling and
 * XBZRLE would see through that).
 */
const INIT_SCRIPT = `#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run

rate=0
set=64
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    dirty_mib_s=*) rate="\${arg#*=}" ;;
    dirty_mib=*) set="\${arg#*=}" ;;
  esac
done
# a leading zero would make ash read octal
case "$rate" in ''|*[!0-9]*|0?*) rate=0 ;; esac
case "$set" in ''|*[!0-9]*|0*) set=64 ;; esac

# source: ${CHUNK_MIB} MiB per dd call plus 1 MiB of room for the moving offset
chunk=${CHUNK_MIB}
if [ "$rate" -gt 0 ]; then
  dd if=/dev/urandom of=/run/random bs=64k count=16 status=none
  i=0
  while [ "$i" -le "$chunk" ]; do
    cat /run/random || echo "DEBVISOR-GUEST ERROR no room for the random source" >&2
    i=$((i + 1))
  done > /run/source
fi

now() {
  read -r up _ < /proc/uptime
  c="\${up#*.}"
  t=$(( \${up%.*} * 100 + \${c#0} ))
}

pos=0
offset=0
dirty() {
  left=$rate
  while [ "$left" -gt 0 ]; do
    run=$left
    [ "$run" -gt "$chunk" ] && run=$chunk
    [ "$run" -gt $((set - pos)) ] && run=$((set - pos))
    # 4160 = 65 * 64: the offset comes back to an earlier value only after 16384 calls
    offset=$(( (offset + 4160) % 1048576 ))
    dd if=/run/source of=/run/ws bs=1M iflag=skip_bytes skip=$offset seek=$pos count=$run conv=notrunc status=none ||
      echo "DEBVISOR-GUEST ERROR dd failed writing $run MiB at $pos MiB"
    left=$((left - run))
    pos=$(( (pos + run) % set ))
  done
}

echo "DEBVISOR-GUEST dirty_mib_s=$rate dirty_mib=$set"
echo "${TINY_GUEST_READY}"
tick=0
now
next=$((t + 100))
while :; do
  [ "$rate" -gt 0 ] && dirty
  now
  if [ "$t" -lt "$next" ]; then
    usleep $(( (next - t) * 10000 ))
    next=$((next + 100))
  else
    next=$((t + 100))
  fi
  tick=$((tick + 1))
  echo "DEBVISOR-GUEST TICK $tick"
done
`;

/** Bump when the archive layout changes without the script changing. */
const FORMAT = 'tiny-guest-3';

let shared: Promise<TinyGuest> | undefined;

/**
 * A kernel and initramfs that boot under QEMU in seconds and dirty guest memory at the rate given
 * on the command line (see tinyGuestAppend). Built from Debian's linux-image-amd64 and
 * busybox-static, cached in a directory named by the content hash of its inputs, and published
 * with one rename so that parallel test processes share a complete copy.
 */
export function buildTinyGuest(sources: TinyGuestSources = {}): Promise<TinyGuest> {
  if (Object.keys(sources).length > 0) return build(sources);
  shared ??= build({}).catch((error: unknown) => {
    shared = undefined;
    throw error;
  });
  return shared;
}

/** The highest heartbeat number in a serial log so far; 0 before the first. */
export function lastTinyGuestTick(serialLog: string): number {
  let last = 0;
  for (const match of serialLog.matchAll(new RegExp(`${TINY_GUEST_TICK} (\\d+)`, 'g')))
    last = Math.max(last, Number(match[1]));
  return last;
}

/** The kernel command line for the tiny guest. */
export function tinyGuestAppend(load: TinyGuestLoad): string {
  const { dirtyMibPerSecond, workingSetMib } = load;
  if (!Number.isSafeInteger(dirtyMibPerSecond) || dirtyMibPerSecond < 0) {
    throw new Error(`dirtyMibPerSecond must be a whole number >= 0, got ${dirtyMibPerSecond}`);
  }
  if (workingSetMib !== undefined && (!Number.isSafeInteger(workingSetMib) || workingSetMib < 1)) {
    throw new Error(`workingSetMib must be a whole number >= 1, got ${workingSetMib}`);
  }
  const params = [
    'console=ttyS0',
    'quiet',
    'panic=-1',
    'rdinit=/init',
    `dirty_mib_s=${dirtyMibPerSecond}`,
  ];
  if (workingSetMib !== undefined) params.push(`dirty_mib=${workingSetMib}`);
  return params.join(' ');
}

async function build(sources: TinyGuestSources): Promise<TinyGuest> {
  const kernel = await newestKernel(sources.bootDir ?? '/boot');
  const busyboxPath = sources.busyboxPath ?? '/bin/busybox';
  const busybox = await readStaticBusybox(busyboxPath);
  const kernelBytes = await readFile(kernel);
  const hash = createHash('sha256');
  for (const part of [FORMAT, kernel, INIT_SCRIPT]) hash.update(part).update('\0');
  hash.update(kernelBytes).update(busybox);
  const dir = join(
    sources.cacheRoot ?? tmpdir(),
    `debvisor-tiny-guest-${hash.digest('hex').slice(0, 16)}`,
  );
  const guest = { dir, kernelPath: join(dir, 'kernel'), initrdPath: join(dir, 'initrd.cpio') };
  if ((await exists(guest.kernelPath)) && (await exists(guest.initrdPath))) return guest;

  await mkdir(dirname(dir), { recursive: true });
  const staging = await mkdtemp(`${dir}.tmp-`);
  try {
    await writeFile(join(staging, 'kernel'), await pvhKernel(kernelBytes, staging));
    await writeFile(join(staging, 'initrd.cpio'), initramfs(busybox));
    await chmod(join(staging, 'kernel'), 0o644);
    await chmod(join(staging, 'initrd.cpio'), 0o644);
    await chmod(staging, 0o755);
    await rename(staging, dir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    // another process published the same content first
    if (!((await exists(guest.kernelPath)) && (await exists(guest.initrdPath)))) throw error;
  }
  return guest;
}

async function newestKernel(bootDir: string): Promise<string> {
  const names = (await readdir(bootDir).catch(() => [])).filter((name) =>
    name.startsWith('vmlinuz-'),
  );
  if (names.length === 0) {
    throw new Error(
      `no Linux kernel (vmlinuz-*) in ${bootDir}: install the Debian package linux-image-amd64 (apt-get install linux-image-amd64)`,
    );
  }
  names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  return join(bootDir, names[names.length - 1]!);
}

/**
 * The bzImage's payload unpacked: an ELF vmlinux that QEMU starts through its PVH entry point.
 * That skips the kernel's own XZ decompression, which under TCG takes longer than the whole boot
 * after it (READY after about 3.5 s instead of 8 s here). Falls back to the bzImage when the
 * payload is not XZ or the kernel has no PVH entry (QEMU would refuse such an ELF).
 */
async function pvhKernel(bzImage: Buffer, scratch: string): Promise<Buffer> {
  // boot protocol header: setup sectors at 0x1f1, payload offset/length at 0x248/0x24c
  if (bzImage.length < 0x250 || bzImage.toString('latin1', 0x202, 0x206) !== 'HdrS') return bzImage;
  const start = ((bzImage[0x1f1] || 4) + 1) * 512 + bzImage.readUInt32LE(0x248);
  const payload = bzImage.subarray(start, start + bzImage.readUInt32LE(0x24c));
  if (!payload.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])))
    return bzImage;
  const xz = requireBinary('xz', 'xz-utils');
  const packed = join(scratch, 'vmlinux.xz');
  await writeFile(packed, payload);
  // --single-stream: the kernel build appends the unpacked size after the stream
  const { stdout } = await promisify(execFile)(
    xz,
    ['--decompress', '--single-stream', '--stdout', '--', packed],
    {
      encoding: 'buffer',
      maxBuffer: 1024 * 1024 * 1024,
      timeout: 120_000,
    },
  );
  await rm(packed);
  // the ELF note XEN_ELFNOTE_PHYS32_ENTRY: type 18, name "Xen"
  const hasPvhEntry = stdout.indexOf(Buffer.from([0x12, 0, 0, 0, 0x58, 0x65, 0x6e, 0])) >= 0;
  return hasPvhEntry && isStaticElf64(stdout) ? stdout : bzImage;
}

/** Debian's plain busybox package is dynamically linked and would need a libc in the initramfs. */
async function readStaticBusybox(path: string): Promise<Buffer> {
  const hint = 'install the Debian package busybox-static (apt-get install busybox-static)';
  const bytes = await readFile(path).catch(() => {
    throw new Error(`${path} is missing: ${hint}`);
  });
  if (!isStaticElf64(bytes))
    throw new Error(
      `${path} is not a statically linked x86-64 program (dynamically linked?): ${hint}`,
    );
  return bytes;
}

/** A 64-bit little-endian ELF without a PT_INTERP program header (no dynamic loader needed). */
function isStaticElf64(elf: Buffer): boolean {
  const isElf64Le =
    elf.length >= 64 && elf.readUInt32BE(0) === 0x7f454c46 && elf[4] === 2 && elf[5] === 1;
  if (!isElf64Le) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > elf.length) return false;
    if (elf.readUInt32LE(at) === 3) return false; // PT_INTERP
  }
  return true;
}

interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
  rdev?: [major: number, minor: number];
}

/** The initramfs; /dev/console must exist so the kernel can give PID 1 its stdin/out/err. */
function initramfs(busybox: Buffer): Buffer {
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'run'].map((name) => ({ name, mode: 0o040755 })),
    { name: 'dev/console', mode: 0o020600, rdev: [5, 1] },
    { name: 'bin/busybox', mode: 0o100755, data: busybox },
    { name: 'bin/sh', mode: 0o120777, data: Buffer.from('busybox') },
    { name: 'init', mode: 0o100755, data: Buffer.from(INIT_SCRIPT) },
  ];
  return newc(entries);
}

/** A newc ("070701") cpio archive, the format the kernel unpacks into its rootfs. */
function newc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let length = 0;
  const push = (part: Buffer) => {
    parts.push(part);
    length += part.length;
    const pad = (4 - (length % 4)) % 4;
    if (pad > 0) {
      parts.push(Buffer.alloc(pad));
      length += pad;
    }
  };
  const all: CpioEntry[] = [...entries, { name: 'TRAILER!!!', mode: 0 }];
  all.forEach((entry, index) => {
    const data = entry.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${entry.name}\0`);
    const isTrailer = index === entries.length;
    const fields = [
      isTrailer ? 0 : index + 1, // ino
      entry.mode,
      0, // uid
      0, // gid
      entry.mode >>> 12 === 0o04 ? 2 : 1, // nlink
      0, // mtime: fixed, so that the archive depends on its content only
      data.length,
      0, // devmajor
      0, // devminor
      entry.rdev?.[0] ?? 0,
      entry.rdev?.[1] ?? 0,
      name.length,
      0, // check
    ];
    push(
      Buffer.concat([
        Buffer.from(
          `070701${fields.map((field) => field.toString(16).padStart(8, '0')).join('')}`,
          'ascii',
        ),
        name,
      ]),
    );
    if (data.length > 0) push(data);
  });
  return Buffer.concat(parts);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
