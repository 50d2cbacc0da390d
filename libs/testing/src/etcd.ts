import { join } from 'node:path';
import { requireBinary } from './binaries';
import { freePort } from './ports';
import { spawnManaged, type ManagedProcess } from './processes';
import { tempDir } from './temp';

export interface EtcdInstance {
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  readonly dataDir: string;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

export interface EtcdOptions {
  name?: string;
  dataDir?: string;
  clientPort?: number;
  logFile?: string;
}

/** A single-member etcd (Debian package etcd-server) on free loopback ports, ready to serve. */
export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdInstance> {
  const binary = requireBinary('etcd', 'etcd-server');
  const name = options.name ?? 'default';
  const dataDir = options.dataDir ?? join(tempDir('debvisor-etcd-'), 'data');
  const clientPort = options.clientPort ?? (await freePort());
  const peerPort = await freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = spawnManaged(
    `etcd ${name}`,
    binary,
    [
      `--name=${name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${name}=${peer}`,
      '--initial-cluster-state=new',
      '--log-level=warn',
      '--logger=zap',
    ],
    { logFile: options.logFile },
  );
  await waitForHealth(endpoint, child);
  return { endpoint, dataDir, process: child, stop: () => child.stop() };
}

async function waitForHealth(
  endpoint: string,
  child: ManagedProcess,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (child.child.exitCode !== null)
      throw new Error(`etcd exited early:\n${child.output().slice(-4000)}`);
    try {
      const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
      const body = (await response.json()) as { health?: string };
      if (body.health === 'true') return;
      last = JSON.stringify(body);
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await child.kill();
  throw new Error(
    `etcd at ${endpoint} not healthy within ${timeoutMs} ms (${last}):\n${child.output().slice(-4000)}`,
  );
}
