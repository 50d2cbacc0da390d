import { issueCertificate, type KeyPairPem } from '@debvisor/pki';
import {
  debvisorV1,
  grpcHealthV1,
  type AccessServiceDefinition,
  type HaServiceDefinition,
  type HealthDefinition,
  type MigrateVmRequest,
  type MigrationProgress__Output,
  type MigrationServiceDefinition,
  type TunnelFrame,
  type TunnelFrame__Output,
  type NodeServiceDefinition,
  type StorageServiceDefinition,
  type VmServiceDefinition,
} from '@debvisor/proto';
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join, resolve } from 'node:path';
import { startEtcd, type EtcdInstance } from './etcd';
import type { NodeNamespace } from './netns';
import { createClusterPki, createManagerIdentity, writeTlsFiles } from './pki';
import { freePort } from './ports';
import { spawnManaged, type ManagedProcess } from './processes';
import { tempDir } from './temp';

const ROOT = resolve(__dirname, '../../..');
export const AGENT_MAIN = join(ROOT, 'apps/agent/dist/main.js');
export const AGENT_CLI = join(ROOT, 'apps/agent/dist/cli.js');
const READY = /"msg":"agent ready"/;

export interface StartClusterOptions {
  clusterId: string;
  /** Number of agents (nodes), default 3; node ids are node-1, node-2, … */
  nodes?: number;
  /** sim.seedVms of every agent, default 3. */
  vmsPerNode?: number;
  /** sim.timeScale, default 0.02 (a VM start takes 80 ms). */
  timeScale?: number;
  /** A further client CA the agents trust (the manager's), besides the harness's own client identity. */
  trustedClientCaPem?: string;
  /** Default 3 s, so that a killed agent disappears quickly. */
  leaseTtlSeconds?: number;
  /** Default: a third of the lease TTL. */
  heartbeatIntervalSeconds?: number;
  /** Default 1 s, so that revocation and rotation show quickly. */
  apiKeyCacheSeconds?: number;
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** metrics.requireClientCert of every agent (default false). */
  metricsRequireClientCert?: boolean;
  /** Give every agent an audit file (audit.file): `<stateDir>/rpc-audit.log` (default: none). */
  auditFile?: boolean;
  /** Further agent configuration per node, merged over the harness's (e.g. the qemu hypervisor driver). */
  agentConfig?: (nodeId: string, stateDir: string) => Record<string, unknown>;
  /**
   * Trust the other harness clusters running in this process as migration peers, and be trusted
   * by them, as an operator does with `debvisor-agent-admin peer trust` (default true).
   */
  trustRunningPeers?: boolean;
  /**
   * Agent certificates valid this long from start (instead of years), and tls.certificateLifetimeSeconds
   * of the issuers: the agents renew them themselves at 70–90 % of it.
   */
  certificateLifetimeSeconds?: number;
  /** Nodes that hold the cluster CA key (tls.issuer) and sign the others' renewals (default none). */
  issuerNodes?: string[];
  /** Runs before each agent first starts (e.g. writeQemuVm to give a qemu node its VMs). */
  prepareNode?: (nodeId: string, stateDir: string) => void | Promise<void>;
  /**
   * The address etcd and the agents outside a namespace listen on (default 127.0.0.1): the host's
   * end of a NodeNamespace's veth pair, so that the node inside reaches them.
   */
  hostAddress?: string;
  /** Nodes run inside a network namespace (createNodeNamespace): they listen on its address. */
  namespaces?: Record<string, Pick<NodeNamespace, 'address' | 'exec'>>;
}

export interface TestAgent {
  readonly nodeId: string;
  /** <host>:<port> (127.0.0.1 unless the cluster has a hostAddress or the node a namespace), the same across restarts. */
  readonly endpoint: string;
  /** 127.0.0.1:<port> of the agent's metrics listener (HTTPS, GET /metrics). */
  readonly metricsEndpoint: string;
  readonly configFile: string;
  readonly stateDir: string;
  /** The current agent process (a new one after restart()). */
  readonly process: ManagedProcess;
  /** SIGTERM: a clean stop (the node leaves the registry at once). */
  stop(): Promise<void>;
  /** SIGKILL: a crash (the node's lease expires after the TTL). */
  kill(): Promise<void>;
  /** Starts the agent again with the same configuration and state; resolves once it is ready. */
  restart(): Promise<void>;
}

export interface ClientIdentity {
  certPem: string;
  keyPem: string;
  /** The CA that issued the certificate (trusted by the agents through tls.clientCas). */
  caPem: string;
}

export interface CreateApiKeyOptions {
  principal?: string;
  description?: string;
  /** 90d, 12h, 30m, 5s, … or never (the default). */
  expiresIn?: string;
}

export interface TestCluster {
  readonly clusterId: string;
  readonly etcd: EtcdInstance;
  /** The cluster CA certificate (what a manager pins). */
  readonly caPem: string;
  /** The cluster CA with its key, to issue further certificates in tests. */
  readonly ca: KeyPairPem;
  /** The issuing nodes' tls.issuer files (the cluster CA's certificate and key), for `ca begin|finish`. */
  readonly issuerFiles: { cert: string; key: string };
  readonly agents: TestAgent[];
  /** A manager-like client identity from its own client CA, trusted by every agent. */
  readonly client: ClientIdentity;
  /** Creates an API key with the agent admin CLI; answers the key (dvk_…). */
  createApiKey(permissions: string[], options?: CreateApiKeyOptions): Promise<string>;
  /** Trusts `peer`'s CA as a migration peer here (what `debvisor-agent-admin peer trust` writes). */
  trustPeer(peer: Pick<TestCluster, 'clusterId' | 'caPem'>): Promise<void>;
  /** Runs the agent admin CLI against this cluster's etcd (`--etcd` and its TLS files are added). */
  admin(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** A client of `agent` (default: the first) with the harness's client identity. */
  connect(apiKey: string | undefined, agent?: TestAgent): AgentClient;
  /**
   * Scrapes `agent`'s metrics listener (default: the first), verifying it against the cluster CA;
   * with `clientCert` it presents the harness's client certificate. Answers the status and body.
   */
  scrape(
    agent?: TestAgent,
    options?: { clientCert?: boolean; path?: string },
  ): Promise<{ status: number; contentType: string; body: string }>;
  /** Creates a plain image in this cluster's simulated RBD storage, as `rbd create` would (not mirrored). */
  createSimImage(image: { pool: string; image: string; sizeBytes: number }): Promise<void>;
  /**
   * Pairs `pool` (default rbd) of this cluster and `peer` for RBD mirroring as an operator does:
   * a peer bootstrap created here, imported at the peer (both ways), through the agents' StorageService.
   */
  pairMirroring(peer: TestCluster, pool?: string): Promise<void>;
  /**
   * Enables mirroring of an image here (its pool paired with `peer`'s) and waits until the peer
   * replays it: what a cross-cluster migration's pre-flight looks for.
   */
  mirrorImage(peer: TestCluster, image: { pool: string; image: string }): Promise<void>;
  stop(): Promise<void>;
}

/** A real etcd and real agent processes (apps/agent/dist/main.js), each with its own state and port. */
export async function startCluster(options: StartClusterOptions): Promise<TestCluster> {
  if (!existsSync(AGENT_MAIN)) {
    throw new Error(
      `${AGENT_MAIN} is missing: run \`npm run build\` (or \`npx tsc -b apps/agent\`) before the agent tests`,
    );
  }
  const { clusterId, nodes = 3, vmsPerNode = 3, timeScale = 0.02, leaseTtlSeconds = 3 } = options;
  const dir = tempDir(`debvisor-cluster-${clusterId}-`);
  mkdirSync(join(dir, 'logs'));
  const [etcd, pki, manager] = await Promise.all([
    startEtcd({ logFile: join(dir, 'logs/etcd.log'), host: options.hostAddress }),
    createClusterPki(clusterId),
    createManagerIdentity(`test-${clusterId}`),
  ]);
  const pkiDir = join(dir, 'pki');
  const clientCaFiles = [join(pkiDir, 'harness-client-ca.crt')];
  mkdirSync(pkiDir);
  writeFileSync(clientCaFiles[0], manager.ca.certPem);
  if (options.trustedClientCaPem) {
    clientCaFiles.push(join(pkiDir, 'trusted-client-ca.crt'));
    writeFileSync(clientCaFiles[1], options.trustedClientCaPem);
  }
  const issuerFiles = { cert: join(pkiDir, 'issuer-ca.crt'), key: join(pkiDir, 'issuer-ca.key') };
  writeFileSync(issuerFiles.cert, pki.ca.certPem);
  writeFileSync(issuerFiles.key, pki.ca.keyPem, { mode: 0o600 });
  const lifetimeSeconds = options.certificateLifetimeSeconds;

  const agents = await Promise.all(
    Array.from({ length: nodes }, async (_, i) => {
      const nodeId = `node-${i + 1}`;
      const namespace = options.namespaces?.[nodeId];
      const host = namespace?.address ?? options.hostAddress ?? '127.0.0.1';
      const endpoint = `${host}:${await freePort()}`;
      const metricsEndpoint = `127.0.0.1:${await freePort()}`;
      const pair =
        lifetimeSeconds === undefined
          ? await pki.agent(nodeId, [host])
          : await issueAgentCertificate(
              pki.ca,
              nodeId,
              new Date(Date.now() + lifetimeSeconds * 1000),
            );
      const tls = writeTlsFiles(pkiDir, nodeId, pair, pki.ca.certPem);
      const stateDir = join(dir, 'nodes', nodeId);
      const configFile = join(dir, `${nodeId}.json`);
      const config = {
        clusterId,
        nodeId,
        listen: endpoint,
        advertise: endpoint,
        etcd: { endpoints: [etcd.endpoint], ...(etcd.tls ? { tls: etcd.tls } : {}) },
        tls: {
          cert: tls.cert,
          key: tls.key,
          ca: tls.ca,
          clientCas: clientCaFiles,
          ...(options.issuerNodes?.includes(nodeId) ? { issuer: issuerFiles } : {}),
          ...(lifetimeSeconds === undefined ? {} : { certificateLifetimeSeconds: lifetimeSeconds }),
        },
        stateDir,
        leaseTtlSeconds,
        heartbeatIntervalSeconds: options.heartbeatIntervalSeconds ?? leaseTtlSeconds / 3,
        apiKeyCacheSeconds: options.apiKeyCacheSeconds ?? 1,
        hypervisor: { driver: 'sim' },
        storage: { driver: 'sim' },
        // A fast simulated rbd-mirror, so that mirroring shows within a few hundred milliseconds.
        sim: {
          timeScale,
          seedVms: vmsPerNode,
          mirror: { replayIntervalMs: 200, peerTimeoutMs: 1_000 },
        },
        metrics: {
          enabled: true,
          listen: metricsEndpoint,
          requireClientCert: options.metricsRequireClientCert ?? false,
        },
        ...(options.auditFile ? { audit: { file: join(stateDir, 'rpc-audit.log') } } : {}),
        logLevel: options.logLevel ?? 'info',
        ...options.agentConfig?.(nodeId, stateDir),
      };
      writeFileSync(configFile, JSON.stringify(config, null, 2));
      await options.prepareNode?.(nodeId, stateDir);
      return new AgentProcess(
        nodeId,
        endpoint,
        metricsEndpoint,
        configFile,
        stateDir,
        join(dir, 'logs', `${nodeId}.log`),
        namespace?.exec() ?? [],
      );
    }),
  );

  let storageKey: Promise<string> | undefined;
  /** A client with the storage permissions the mirroring helpers need (one API key per cluster). */
  const storageClient = async (): Promise<AgentClient> =>
    cluster.connect(
      await (storageKey ??= cluster.createApiKey(['storage:*'], { principal: 'test-mirroring' })),
    );
  const cluster: TestCluster = {
    async createSimImage({ pool, image, sizeBytes }) {
      const client = etcd.client();
      try {
        // The sim storage driver's record (apps/agent/src/drivers/sim/sim-rbd.records.ts); its content version is derived on first read.
        const key = `/debvisor/sim/rbd/${pool}/${image}`;
        const created = await client
          .if(key, 'Create', '==', 0)
          .then(
            client
              .put(key)
              .value(
                JSON.stringify({ pool, image, sizeBytes, createdAt: new Date().toISOString() }),
              ),
          )
          .commit();
        if (!created.succeeded) throw new Error(`the sim image ${pool}/${image} exists already`);
      } finally {
        client.close();
      }
    },
    async pairMirroring(peer, pool = 'rbd') {
      const [here, there] = await Promise.all([storageClient(), peerStorageClient(peer)]);
      try {
        const { token } = await here.storage.createPeerBootstrap({ pool, siteName: clusterId });
        await there.storage.importPeerBootstrap({
          pool,
          siteName: peer.clusterId,
          token,
          direction: 'rx-tx',
        });
      } finally {
        here.close();
        there.close();
      }
    },
    async mirrorImage(peer, { pool, image }) {
      const [here, there] = await Promise.all([storageClient(), peerStorageClient(peer)]);
      try {
        const enabled = await here.storage.enableMirroring({
          pool,
          image,
          mode: 'snapshot',
          scheduleInterval: '',
        });
        const deadline = Date.now() + 30_000;
        for (;;) {
          const status = await there.storage
            .getMirrorStatus({ pool, image })
            .catch(() => undefined);
          if (status?.globalId === enabled.globalId && status.state === 'up+replaying') return;
          if (Date.now() > deadline)
            throw new Error(
              `${peer.clusterId} did not replay ${pool}/${image} within 30 s (last: ${status ? `${status.state} ${status.description}` : 'no image'})`,
            );
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        here.close();
        there.close();
      }
    },
    clusterId,
    etcd,
    caPem: pki.ca.certPem,
    ca: pki.ca,
    issuerFiles,
    agents,
    client: {
      certPem: manager.client.certPem,
      keyPem: manager.client.keyPem,
      caPem: manager.ca.certPem,
    },
    async trustPeer(peer) {
      const client = etcd.client();
      try {
        await client.put(`/debvisor/trust/peer-clusters/${peer.clusterId}`).value(
          JSON.stringify({
            clusterId: peer.clusterId,
            caPem: peer.caPem,
            addedAt: new Date().toISOString(),
          }),
        );
      } finally {
        client.close();
      }
    },
    async createApiKey(permissions, keyOptions = {}) {
      const args = [
        'apikey',
        'create',
        '--principal',
        keyOptions.principal ?? 'test-manager',
        '--permissions',
        permissions.join(','),
        '--json',
      ];
      if (keyOptions.description) args.push('--description', keyOptions.description);
      if (keyOptions.expiresIn) args.push('--expires-in', keyOptions.expiresIn);
      const result = await cluster.admin(args);
      if (result.code !== 0)
        throw new Error(`apikey create failed (exit ${result.code}): ${result.stderr}`);
      return (JSON.parse(result.stdout) as { key: string }).key;
    },
    admin: (args) =>
      runAdmin([
        ...args,
        '--etcd',
        etcd.endpoint,
        ...(etcd.tls
          ? ['--etcd-ca', etcd.tls.ca, '--etcd-cert', etcd.tls.cert, '--etcd-key', etcd.tls.key]
          : []),
      ]),
    connect: (apiKey, agent = agents[0]) =>
      agentClient(agent.endpoint, {
        caPem: pki.ca.certPem,
        certPem: manager.client.certPem,
        keyPem: manager.client.keyPem,
        apiKey,
      }),
    scrape: (agent = agents[0], scrapeOptions = {}) =>
      httpsGet(`https://${agent.metricsEndpoint}${scrapeOptions.path ?? '/metrics'}`, {
        ca: pki.ca.certPem,
        ...(scrapeOptions.clientCert
          ? { cert: manager.client.certPem, key: manager.client.keyPem }
          : {}),
      }),
    async stop() {
      runningClusters.delete(cluster);
      await Promise.all(agents.map((agent) => agent.stop()));
      // The qemu driver's VMs outlive their agent by design (as under libvirt): end them too.
      for (const agent of agents) killQemus(agent.stateDir);
      await etcd.destroy();
    },
  };
  try {
    if (options.trustRunningPeers ?? true) {
      for (const peer of runningClusters) {
        if (peer.clusterId === clusterId) continue;
        await Promise.all([cluster.trustPeer(peer), peer.trustPeer(cluster)]);
      }
      runningClusters.add(cluster);
    }
    await Promise.all(agents.map((agent) => agent.restart()));
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

/** Harness clusters of this process that trust each other as migration peers. */
const runningClusters = new Set<TestCluster>();

/** A storage client of another harness cluster (it creates its own key). */
async function peerStorageClient(peer: TestCluster): Promise<AgentClient> {
  return peer.connect(await peer.createApiKey(['storage:*'], { principal: 'test-mirroring' }));
}

class AgentProcess implements TestAgent {
  private current: ManagedProcess | undefined;

  constructor(
    readonly nodeId: string,
    readonly endpoint: string,
    readonly metricsEndpoint: string,
    readonly configFile: string,
    readonly stateDir: string,
    private readonly logFile: string,
    /** Runs the agent through this (ip netns exec <ns>), which keeps its pid. */
    private readonly prefix: readonly string[] = [],
  ) {}

  get process(): ManagedProcess {
    if (!this.current) throw new Error(`agent ${this.nodeId} was never started`);
    return this.current;
  }

  async stop(): Promise<void> {
    await this.current?.stop();
  }

  async kill(): Promise<void> {
    await this.current?.kill();
  }

  async restart(): Promise<void> {
    await this.current?.stop();
    const [command, ...prefixArgs] = [...this.prefix, process.execPath];
    this.current = spawnManaged(
      `agent ${this.nodeId}`,
      command!,
      [...prefixArgs, AGENT_MAIN, '--config', this.configFile],
      { cwd: ROOT, logFile: this.logFile },
    );
    await this.current.waitFor(READY, 60_000);
  }
}

/** A GET over HTTPS, the server verified against `ca` with the name localhost. */
export function httpsGet(
  url: string,
  tls: { ca: string; cert?: string; key?: string },
): Promise<{ status: number; contentType: string; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = httpsRequest(url, { ...tls, servername: 'localhost', timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolvePromise({
          status: res.statusCode ?? 0,
          contentType: String(res.headers['content-type'] ?? ''),
          body,
        }),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

function runAdmin(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(
      process.execPath,
      [AGENT_CLI, ...args],
      { cwd: ROOT, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolvePromise({ code, stdout, stderr });
      },
    );
  });
}

// --- a small typed client of the agent's services ---------------------------------------------

export interface AgentCallOptions {
  /** Milliseconds from now; default 15 s. */
  deadlineMs?: number;
  /** Extra metadata (e.g. to impersonate a forwarding agent in tests). */
  metadata?: Record<string, string>;
}

type Unary<Req, Res> = (request: Req, options?: AgentCallOptions) => Promise<Res>;
type Promisified<D> = {
  [K in keyof D as Uncapitalize<K & string>]: D[K] extends {
    requestSerialize: (value: infer Req) => Buffer;
    responseDeserialize: (bytes: Buffer) => infer Res;
  }
    ? Unary<Req, Res>
    : never;
};

export interface AgentClient {
  node: Promisified<NodeServiceDefinition>;
  vm: Promisified<VmServiceDefinition>;
  storage: Promisified<StorageServiceDefinition>;
  /** The unary migration calls (MigrateVm and Tunnel stream). */
  migration: Omit<Promisified<MigrationServiceDefinition>, 'migrateVm' | 'tunnel'>;
  /** MigrateVm: every progress message, each also handed to `onProgress`; rejects with the stream's error. */
  migrateVm(
    request: MigrateVmRequest,
    onProgress?: (progress: MigrationProgress__Output) => void,
  ): Promise<MigrationProgress__Output[]>;
  /** Tunnel: a raw stream, as another agent would open it. */
  tunnel(): grpc.ClientDuplexStream<TunnelFrame, TunnelFrame__Output>;
  access: Promisified<AccessServiceDefinition>;
  /** HA: status, policies, maintenance (docs/ha.md). */
  ha: Promisified<HaServiceDefinition>;
  /** gRPC health checking (Check, List); sends no API key unless the client was given one. */
  health: Omit<Promisified<HealthDefinition>, 'watch'>;
  /** Health Watch: `listener` hears every status the server sends; cancel() ends the stream. */
  watchHealth(
    service: string,
    listener: (status: string) => void,
    onError?: (error: grpc.ServiceError) => void,
  ): { cancel(): void };
  close(): void;
}

export interface AgentClientOptions {
  /** The cluster CA, to verify the agent. */
  caPem: string;
  /** The client certificate and key; leave them out to try a connection without one. */
  certPem?: string;
  keyPem?: string;
  /** A `dvk_…` key, sent as `authorization: Bearer …`. */
  apiKey?: string;
  channelOptions?: grpc.ChannelOptions;
}

/** Promisified clients of every agent service over one mutual-TLS channel; errors are grpc ServiceErrors. */
export function agentClient(endpoint: string, options: AgentClientOptions): AgentClient {
  const credentials = grpc.credentials.createSsl(
    Buffer.from(options.caPem),
    options.keyPem ? Buffer.from(options.keyPem) : null,
    options.certPem ? Buffer.from(options.certPem) : null,
  );
  const client = new grpc.Client(endpoint, credentials, {
    'grpc.max_reconnect_backoff_ms': 1_000,
    ...options.channelOptions,
  });
  const v1 = debvisorV1();
  const promisify = <D extends grpc.ServiceDefinition>(definition: D): Promisified<D> => {
    const methods: Record<string, Unary<unknown, unknown>> = {};
    for (const [name, method] of Object.entries(definition)) {
      if (method.requestStream || method.responseStream) continue;
      methods[name.charAt(0).toLowerCase() + name.slice(1)] = (request, callOptions = {}) =>
        new Promise((resolvePromise, reject) => {
          const metadata = new grpc.Metadata();
          if (options.apiKey) metadata.set('authorization', `Bearer ${options.apiKey}`);
          for (const [key, value] of Object.entries(callOptions.metadata ?? {}))
            metadata.set(key, value);
          client.makeUnaryRequest(
            method.path,
            method.requestSerialize,
            method.responseDeserialize,
            request,
            metadata,
            { deadline: Date.now() + (callOptions.deadlineMs ?? 15_000) },
            (error, response) => (error ? reject(error) : resolvePromise(response)),
          );
        });
    }
    return methods as Promisified<D>;
  };
  return {
    node: promisify(v1.NodeService.service),
    vm: promisify(v1.VmService.service),
    storage: promisify(v1.StorageService.service),
    migration: promisify(v1.MigrationService.service),
    access: promisify(v1.AccessService.service),
    ha: promisify(v1.HaService.service),
    health: promisify(grpcHealthV1().Health.service),
    watchHealth(service, listener, onError) {
      const watch = grpcHealthV1().Health.service.Watch;
      const metadata = new grpc.Metadata();
      if (options.apiKey) metadata.set('authorization', `Bearer ${options.apiKey}`);
      const stream = client.makeServerStreamRequest(
        watch.path,
        watch.requestSerialize,
        watch.responseDeserialize,
        { service },
        metadata,
        {},
      );
      stream.on('data', (response: { status: string }) => listener(response.status));
      stream.on('error', (error: grpc.ServiceError) => {
        if (error.code !== grpc.status.CANCELLED) onError?.(error);
      });
      return { cancel: () => stream.cancel() };
    },
    migrateVm(request, onProgress) {
      const method = v1.MigrationService.service.MigrateVm;
      const metadata = new grpc.Metadata();
      if (options.apiKey) metadata.set('authorization', `Bearer ${options.apiKey}`);
      const stream = client.makeServerStreamRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        metadata,
        {},
      );
      const seen: MigrationProgress__Output[] = [];
      return new Promise((resolvePromise, reject) => {
        stream.on('data', (progress: MigrationProgress__Output) => {
          seen.push(progress);
          onProgress?.(progress);
        });
        stream.on('end', () => resolvePromise(seen));
        stream.on('error', reject);
      });
    },
    tunnel() {
      const method = v1.MigrationService.service.Tunnel;
      return client.makeBidiStreamRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        new grpc.Metadata(),
        {},
      );
    },
    close: () => client.close(),
  };
}

/** Kills the QEMU processes of a qemu-driver node (found through <stateDir>/run/<uuid>/pid, checked against their command line). */
export function killQemus(stateDir: string): void {
  const runDir = join(stateDir, 'run');
  if (!existsSync(runDir)) return;
  for (const vm of readdirSync(runDir)) {
    const pidFile = join(runDir, vm, 'pid');
    if (!existsSync(pidFile)) continue;
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) continue;
    try {
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (command.includes('qemu-system') && command.includes(stateDir))
        process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** An agent certificate issued by `ca` (for tests that play a peer agent), valid until `notAfter` (default years). */
export function issueAgentCertificate(
  ca: KeyPairPem,
  nodeId: string,
  notAfter?: Date,
): Promise<KeyPairPem> {
  return issueCertificate(ca, {
    commonName: `agent:${nodeId}`,
    organizationalUnit: 'debvisor-agent',
    dnsNames: ['localhost', nodeId],
    ipAddresses: ['127.0.0.1'],
    usage: 'both',
    // A short-lived certificate starts now (not a minute ago): its renewal falls where its lifetime says.
    ...(notAfter ? { notBefore: new Date(Date.now() - 1_000), notAfter } : {}),
  });
}
