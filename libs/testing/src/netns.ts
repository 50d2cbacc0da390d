import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { requireBinary } from './binaries';

/** Every command of the emulated WAN finishes within this (they are quick kernel calls). */
const COMMAND_TIMEOUT_MS = 10_000;
/** The largest TCP buffer either end may grow to (256 MiB, above any bandwidth-delay product here). */
const MAX_TCP_BUFFER = 256 * 1024 * 1024;

export interface WanLinkOptions {
  /** Round-trip time the link adds (half of it on each direction's egress). */
  rttMs: number;
  /** Shaped rate of each direction, in Mbit/s. */
  rateMbit: number;
}

export interface WanLink extends WanLinkOptions {
  /** The two network namespaces, each holding one end of the link. */
  readonly namespaces: readonly [string, string];
  /** The IPv4 address of each end. */
  readonly addresses: readonly [string, string];
  /** The argv prefix that runs a program in end `end`'s namespace (ip netns exec <ns>). */
  exec(end: 0 | 1): string[];
  /** Stops the wire and removes both namespaces. */
  destroy(): Promise<void>;
}

const live = new Map<WanLink, () => void>();
// A process that ends without destroying its links still removes them (synchronously: at exit
// nothing asynchronous runs any more).
process.once('exit', () => {
  for (const removeNow of live.values()) removeNow();
});

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(command, args, { timeout: COMMAND_TIMEOUT_MS }, (error, stdout, stderr) =>
      error
        ? reject(new Error(`${command} ${args.join(' ')}: ${stderr.trim() || error.message}`))
        : resolve(stdout),
    ),
  );
}

/**
 * The wire between the two namespaces: a user-space netem (this kernel has no sch_netem), in
 * Python because it needs the TUNSETIFF ioctl. It opens two TUN devices, and forwards each packet
 * read from one to the other after its serialization at the shaped rate plus half the round trip;
 * a direction whose queue holds more than its limit drops (as a router's buffer does). It dies
 * with its parent (PR_SET_PDEATHSIG).
 */
const DELAY_LINE = String.raw`
import collections, ctypes, fcntl, os, selectors, signal, struct, sys, time
ctypes.CDLL(None).prctl(1, signal.SIGKILL)
names = sys.argv[1:3]
one_way = float(sys.argv[3]) / 2000.0
rate = float(sys.argv[4]) * 1e6 / 8.0
limit = int(sys.argv[5])
fds = []
for name in names:
    fd = os.open('/dev/net/tun', os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', name.encode(), 0x0001 | 0x1000))
    fds.append(fd)
print('ready', flush=True)
queues = [collections.deque(), collections.deque()]
queued = [0, 0]
free_at = [0.0, 0.0]
selector = selectors.DefaultSelector()
for index, fd in enumerate(fds):
    selector.register(fd, selectors.EVENT_READ, index)
while True:
    now = time.monotonic()
    timeout = None
    for out, queue in enumerate(queues):
        while queue and queue[0][0] <= now:
            _, packet = queue.popleft()
            queued[out] -= len(packet)
            try:
                os.write(fds[out], packet)
            except OSError:
                pass
        if queue:
            wait = queue[0][0] - now
            timeout = wait if timeout is None else min(timeout, wait)
    for key, _ in selector.select(timeout):
        out = 1 - key.data
        for _ in range(64):
            try:
                packet = os.read(fds[key.data], 65536)
            except BlockingIOError:
                break
            if queued[out] + len(packet) > limit:
                continue
            now = time.monotonic()
            free_at[out] = max(now, free_at[out]) + len(packet) / rate
            queues[out].append((free_at[out] + one_way, packet))
            queued[out] += len(packet)
`;

/** The TUN devices' MTU: large packets keep the user-space wire's per-packet cost low. */
const WIRE_MTU = 65_000;

/**
 * Two network namespaces joined by an emulated WAN: each holds one end of a point-to-point link
 * whose packets are delayed by rttMs / 2 each way and shaped to rateMbit (see DELAY_LINE). The
 * wire's queue holds twice the bandwidth-delay product, and the namespaces' TCP buffers may grow
 * to 256 MiB (net.ipv4.tcp_rmem/tcp_wmem are per namespace), so that neither caps a stream below
 * the link. Needs root, iproute2 and python3.
 */
export async function createWanLink(options: WanLinkOptions): Promise<WanLink> {
  if (!(options.rttMs >= 0 && options.rateMbit > 0))
    throw new Error('a WAN link needs rttMs >= 0 and rateMbit > 0');
  const ip = requireBinary('ip', 'iproute2');
  const python = requireBinary('python3', 'python3');
  const id = randomBytes(4).toString('hex');
  const namespaces = [`dvwan-${id}-a`, `dvwan-${id}-b`] as const;
  const devices = [`dvw${id}a`, `dvw${id}b`] as const;
  // 10.x.y.1 and .2 chosen by the id, so that links side by side differ.
  const net = `10.${parseInt(id.slice(0, 2), 16)}.${parseInt(id.slice(2, 4), 16)}`;
  const addresses = [`${net}.1`, `${net}.2`] as const;
  const bdpBytes = (options.rateMbit * 1e6 * (options.rttMs / 1000)) / 8;
  const limit = Math.max(4 * 1024 * 1024, Math.ceil(2 * bdpBytes));
  const wire = spawn(
    python,
    ['-c', DELAY_LINE, ...devices, String(options.rttMs), String(options.rateMbit), String(limit)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let wireOutput = '';
  wire.stderr.on('data', (chunk: Buffer) => (wireOutput += chunk.toString('utf8')));
  const link: WanLink = {
    ...options,
    namespaces,
    addresses,
    exec: (end) => [ip, 'netns', 'exec', namespaces[end]],
    destroy: async () => {
      live.delete(link);
      wire.kill('SIGKILL');
      for (const ns of namespaces) await run(ip, ['netns', 'delete', ns]).catch(() => undefined);
    },
  };
  live.set(link, () => {
    wire.kill('SIGKILL');
    for (const ns of namespaces) {
      try {
        execFileSync(ip, ['netns', 'delete', ns], { timeout: COMMAND_TIMEOUT_MS, stdio: 'ignore' });
      } catch {
        // not created yet, or gone
      }
    }
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('the WAN wire did not start within 10 s')),
        COMMAND_TIMEOUT_MS,
      );
      wire.stdout.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      wire.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the WAN wire exited with ${code}: ${wireOutput.trim()}`));
      });
    });
    for (const end of [0, 1] as const) {
      const ns = namespaces[end];
      const dev = devices[end];
      await run(ip, ['netns', 'add', ns]);
      await run(ip, ['link', 'set', dev, 'netns', ns]);
      await run(ip, ['-n', ns, 'link', 'set', dev, 'mtu', String(WIRE_MTU)]);
      await run(ip, [
        ...['-n', ns, 'addr', 'add', addresses[end]],
        ...['peer', addresses[1 - end]!, 'dev', dev],
      ]);
      await run(ip, ['-n', ns, 'link', 'set', dev, 'up']);
      await run(ip, ['-n', ns, 'link', 'set', 'lo', 'up']);
      await run(ip, [
        ...['netns', 'exec', ns, 'sysctl', '-q', '-w'],
        `net.ipv4.tcp_rmem=4096 131072 ${MAX_TCP_BUFFER}`,
        `net.ipv4.tcp_wmem=4096 16384 ${MAX_TCP_BUFFER}`,
      ]);
    }
  } catch (error) {
    await link.destroy();
    throw error;
  }
  return link;
}

export interface NodeNamespace {
  /** The namespace's name (`ip netns`). */
  readonly name: string;
  /** The host's end of the veth pair: what the namespace reaches the host's etcd and agents at. */
  readonly hostAddress: string;
  /** The namespace's end: where a process inside listens for the host. */
  readonly address: string;
  /** The argv prefix that runs a program inside (ip netns exec <name>; the program keeps its pid). */
  exec(): string[];
  /** Partitions the namespace: its end of the link goes down, so nothing passes either way. */
  cut(): Promise<void>;
  /** Heals the partition: the link comes up again, with its route. */
  restore(): Promise<void>;
  /** Removes the namespace (and with it the veth pair). */
  destroy(): Promise<void>;
}

const liveNamespaces = new Map<NodeNamespace, () => void>();
process.once('exit', () => {
  for (const removeNow of liveNamespaces.values()) removeNow();
});

/**
 * A network namespace for one node, joined to the host by a veth pair (10.x.y.1 on the host,
 * 10.x.y.2 inside, x.y chosen at random), with no other route: processes inside reach the host's
 * etcd and agents only at hostAddress, so cut() partitions them from all of it at once. Needs root
 * and iproute2.
 */
export async function createNodeNamespace(): Promise<NodeNamespace> {
  const ip = requireBinary('ip', 'iproute2');
  const id = randomBytes(4).toString('hex');
  const name = `dvnode-${id}`;
  const hostDevice = `dvn${id}h`;
  const innerDevice = `dvn${id}n`;
  const net = `10.${200 + (parseInt(id.slice(0, 2), 16) % 50)}.${parseInt(id.slice(2, 4), 16)}`;
  const hostAddress = `${net}.1`;
  const address = `${net}.2`;
  const removeNow = () => {
    for (const args of [
      ['netns', 'delete', name],
      ['link', 'delete', hostDevice],
    ]) {
      try {
        execFileSync(ip, args, { timeout: COMMAND_TIMEOUT_MS, stdio: 'ignore' });
      } catch {
        // not created yet, or gone with the namespace
      }
    }
  };
  const node: NodeNamespace = {
    name,
    hostAddress,
    address,
    exec: () => [ip, 'netns', 'exec', name],
    cut: async () => {
      await run(ip, ['-n', name, 'link', 'set', 'dev', innerDevice, 'down']);
    },
    restore: async () => {
      await run(ip, ['-n', name, 'link', 'set', 'dev', innerDevice, 'up']);
      // The link is usable once its route is back on both ends (the veth's carrier).
      const deadline = Date.now() + COMMAND_TIMEOUT_MS;
      for (;;) {
        const inner = await run(ip, ['-n', name, '-o', 'route', 'show', 'dev', innerDevice]);
        const host = await run(ip, ['-o', 'link', 'show', 'dev', hostDevice]);
        if (
          inner.includes(`${net}.0/24`) &&
          !inner.includes('linkdown') &&
          host.includes('LOWER_UP')
        )
          return;
        if (Date.now() > deadline)
          throw new Error(`the link of ${name} did not come up within ${COMMAND_TIMEOUT_MS} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    destroy: async () => {
      liveNamespaces.delete(node);
      await run(ip, ['netns', 'delete', name]).catch(() => undefined);
      await run(ip, ['link', 'delete', hostDevice]).catch(() => undefined);
    },
  };
  liveNamespaces.set(node, removeNow);
  try {
    await run(ip, ['netns', 'add', name]);
    await run(ip, [
      ...['link', 'add', hostDevice, 'type', 'veth'],
      ...['peer', 'name', innerDevice, 'netns', name],
    ]);
    await run(ip, ['addr', 'add', `${hostAddress}/24`, 'dev', hostDevice]);
    await run(ip, ['link', 'set', 'dev', hostDevice, 'up']);
    await run(ip, ['-n', name, 'addr', 'add', `${address}/24`, 'dev', innerDevice]);
    await run(ip, ['-n', name, 'link', 'set', 'dev', innerDevice, 'up']);
    await run(ip, ['-n', name, 'link', 'set', 'dev', 'lo', 'up']);
    await node.restore(); // waits for the carrier
  } catch (error) {
    await node.destroy();
    throw error;
  }
  return node;
}
