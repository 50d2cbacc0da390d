import { createCa, issueCertificate } from '@debvisor/pki';
import { Etcd3, type IOptions } from 'etcd3';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { requireBinary } from './binaries';
import { freePort } from './ports';
import { spawnManaged, type ManagedProcess } from './processes';
import { removeTempDir, tempDir } from './temp';

/** etcd's mutual TLS: the CA of its server certificate, and a client certificate it accepts (PEM files). */
export interface EtcdTlsFiles {
  ca: string;
  cert: string;
  key: string;
}

export interface EtcdInstance {
  /** https://127.0.0.1:<port> (http:// when started with tls: false; another host when asked) */
  readonly endpoint: string;
  readonly dataDir: string;
  readonly process: ManagedProcess;
  /** The files a client needs (agents: etcd.tls); undefined without TLS. */
  readonly tls: EtcdTlsFiles | undefined;
  /** etcd3 options to reach this etcd (with the client certificate). */
  clientOptions(): IOptions;
  /** A client of this etcd (close it when done). */
  client(): Etcd3;
  stop(): Promise<void>;
  /** Stops it for good and removes the data directory it made (its WAL alone preallocates 64 MiB). */
  destroy(): Promise<void>;
}

export interface EtcdOptions {
  name?: string;
  dataDir?: string;
  clientPort?: number;
  logFile?: string;
  /** Mutual TLS on the client port (default true): every etcd of a test process shares one CA. */
  tls?: boolean;
  /** The IPv4 address the client port listens on (default 127.0.0.1), e.g. a host's veth end. */
  host?: string;
}

interface EtcdPki extends EtcdTlsFiles {
  server: { cert: string; key: string };
  /** A server certificate for another listening address (issued once per address). */
  serverFor(host: string): Promise<{ cert: string; key: string }>;
}

let sharedPki: Promise<EtcdPki> | undefined;

/**
 * The etcd PKI of this test process: one CA, a server certificate for 127.0.0.1/localhost and a
 * client certificate, shared by every etcd (so that a replacement etcd on the same port, and a
 * peer cluster's etcd, accept the same clients).
 */
function etcdPki(): Promise<EtcdPki> {
  sharedPki ??= (async () => {
    const dir = join(tempDir('debvisor-etcd-pki-'), 'pki');
    mkdirSync(dir, { recursive: true });
    const ca = await createCa('DebVisor test etcd CA');
    const [server, client] = await Promise.all([
      issueCertificate(ca, {
        commonName: 'etcd',
        dnsNames: ['localhost'],
        ipAddresses: ['127.0.0.1'],
        usage: 'both',
      }),
      issueCertificate(ca, { commonName: 'debvisor-etcd-client', usage: 'client' }),
    ]);
    const write = (name: string, text: string) => {
      writeFileSync(join(dir, name), text, { mode: 0o600 });
      return join(dir, name);
    };
    const others = new Map<string, Promise<{ cert: string; key: string }>>();
    const serverFor = (host: string) => {
      if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) throw new Error(`not an IPv4 address: ${host}`);
      let issued = others.get(host);
      if (!issued) {
        issued = issueCertificate(ca, {
          commonName: 'etcd',
          dnsNames: ['localhost'],
          ipAddresses: ['127.0.0.1', host],
          usage: 'both',
        }).then((pair) => ({
          cert: write(`server-${host}.crt`, pair.certPem),
          key: write(`server-${host}.key`, pair.keyPem),
        }));
        others.set(host, issued);
      }
      return issued;
    };
    return {
      serverFor,
      ca: write('ca.crt', ca.certPem),
      cert: write('client.crt', client.certPem),
      key: write('client.key', client.keyPem),
      server: {
        cert: write('server.crt', server.certPem),
        key: write('server.key', server.keyPem),
      },
    };
  })();
  return sharedPki;
}

/** A single-member etcd (Debian package etcd-server) on free loopback ports, ready to serve. */
export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdInstance> {
  const binary = requireBinary('etcd', 'etcd-server');
  const name = options.name ?? 'default';
  const ownDir = options.dataDir === undefined ? tempDir('debvisor-etcd-') : undefined;
  const dataDir = options.dataDir ?? join(ownDir!, 'data');
  const clientPort = options.clientPort ?? (await freePort());
  const peerPort = await freePort();
  const host = options.host ?? '127.0.0.1';
  const pki = options.tls === false ? undefined : await etcdPki();
  const server = pki && (host === '127.0.0.1' ? pki.server : await pki.serverFor(host));
  const endpoint = `${pki ? 'https' : 'http'}://${host}:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`; // one member on loopback: no peer traffic
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
      ...(pki && server
        ? [
            '--client-cert-auth',
            `--trusted-ca-file=${pki.ca}`,
            `--cert-file=${server.cert}`,
            `--key-file=${server.key}`,
          ]
        : []),
      '--log-level=warn',
      '--logger=zap',
    ],
    { logFile: options.logFile },
  );
  const tls = pki && { ca: pki.ca, cert: pki.cert, key: pki.key };
  const clientOptions = (): IOptions => ({
    hosts: endpoint,
    ...(tls
      ? {
          credentials: {
            rootCertificate: readFileSync(tls.ca),
            certChain: readFileSync(tls.cert),
            privateKey: readFileSync(tls.key),
          },
        }
      : {}),
  });
  await waitForHealth(endpoint, tls, child);
  return {
    endpoint,
    dataDir,
    process: child,
    tls,
    clientOptions,
    client: () => new Etcd3(clientOptions()),
    stop: () => child.stop(),
    destroy: async () => {
      await child.stop();
      if (ownDir) removeTempDir(ownDir);
    },
  };
}

/** GET <endpoint>/health, with the client certificate over TLS. */
function health(endpoint: string, tls: EtcdTlsFiles | undefined): Promise<string> {
  if (!tls)
    return fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) }).then((r) => r.text());
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${endpoint}/health`,
      {
        ca: readFileSync(tls.ca),
        cert: readFileSync(tls.cert),
        key: readFileSync(tls.key),
        timeout: 1000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(body));
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 1 s')));
    req.on('error', reject);
    req.end();
  });
}

async function waitForHealth(
  endpoint: string,
  tls: EtcdTlsFiles | undefined,
  child: ManagedProcess,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (child.child.exitCode !== null)
      throw new Error(`etcd exited early:\n${child.output().slice(-4000)}`);
    try {
      const body = JSON.parse(await health(endpoint, tls)) as { health?: string };
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
