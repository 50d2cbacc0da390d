import { createCa, issueCertificate } from '@debvisor/pki';
import { rmSync, writeFileSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import { join } from 'node:path';
import { requireBinary } from './binaries';
import { writeTlsFiles } from './pki';
import { freePort } from './ports';
import { spawnManaged, type ManagedProcess } from './processes';
import { tempDir } from './temp';

export interface PebbleOptions {
  /** The port pebble connects to on the domain's address for HTTP-01 (the client's HTTP listener). */
  httpPort: number;
  /** The DNS server pebble resolves names and TXT records through, host:port. */
  dnsServer: string;
  /** External Account Binding: the MAC keys pebble knows (kid → base64url key), and whether it requires one. */
  externalAccountBinding?: { required: boolean; macKeys: Record<string, string> };
}

export interface PebbleInstance {
  /** https://127.0.0.1:<port>/dir */
  readonly directoryUrl: string;
  /** The CA of pebble's own HTTPS certificate (trust it to reach the directory). */
  readonly tlsCaPem: string;
  readonly process: ManagedProcess;
  /** The root pebble issues certificates under (it makes a new one at every start). */
  issuingRootPem(): Promise<string>;
  /** The intermediate pebble signs leaf certificates with (a browser test trusts its key). */
  intermediatePem(): Promise<string>;
  /** `Valid` or `Revoked`: what pebble knows of the certificate with this serial (hex). */
  certificateStatus(serialHex: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Let's Encrypt's test CA (Debian package pebble) on free loopback ports, validating at once
 * (PEBBLE_VA_NOSLEEP), never rejecting a good nonce and never reusing an authorization.
 */
export async function startPebble(options: PebbleOptions): Promise<PebbleInstance> {
  const pebble = requireBinary('pebble', 'pebble');
  const dir = tempDir('debvisor-pebble-');
  try {
    const ca = await createCa('DebVisor test pebble TLS CA');
    const server = await issueCertificate(ca, {
      commonName: 'pebble',
      dnsNames: ['localhost', 'pebble'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    const tls = writeTlsFiles(join(dir, 'tls'), 'pebble', server, ca.certPem);
    const port = await freePort();
    const managementPort = await freePort();
    const configFile = join(dir, 'pebble-config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${port}`,
          managementListenAddress: `127.0.0.1:${managementPort}`,
          certificate: tls.cert,
          privateKey: tls.key,
          httpPort: options.httpPort,
          tlsPort: await freePort(),
          ocspResponderURL: '',
          externalAccountBindingRequired: options.externalAccountBinding?.required ?? false,
          externalAccountMACKeys: options.externalAccountBinding?.macKeys ?? {},
        },
      }),
    );
    const child = spawnManaged(
      'pebble',
      pebble,
      ['-config', configFile, '-dnsserver', options.dnsServer],
      {
        env: {
          ...process.env,
          PEBBLE_VA_NOSLEEP: '1',
          PEBBLE_WFE_NONCEREJECT: '0',
          PEBBLE_AUTHZREUSE: '0',
        },
        cwd: dir,
      },
    );
    try {
      await child.waitFor(/Listening on: 127\.0\.0\.1:\d+/, 30_000);
    } catch (error) {
      await child.kill();
      throw error;
    }
    const management = `https://127.0.0.1:${managementPort}`;
    return {
      directoryUrl: `https://127.0.0.1:${port}/dir`,
      tlsCaPem: ca.certPem,
      process: child,
      issuingRootPem: () => httpsGetText(`${management}/roots/0`, ca.certPem),
      intermediatePem: () => httpsGetText(`${management}/intermediates/0`, ca.certPem),
      async certificateStatus(serialHex) {
        // pebble writes serials without leading zeros, in lower case.
        const serial = serialHex.toLowerCase().replace(/^0+(?=.)/, '');
        const text = await httpsGetText(
          `${management}/cert-status-by-serial/${serial}`,
          ca.certPem,
        );
        return (JSON.parse(text) as { Status: string }).Status;
      },
      async stop() {
        await child.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

export interface ChallTestSrvInstance {
  /** 127.0.0.1:<port>: answers every A query with 127.0.0.1 (give it to pebble as its DNS server). */
  readonly dnsServer: string;
  readonly process: ManagedProcess;
  /** Answers A queries for `host` with `address` instead of 127.0.0.1 (e.g. 127.0.0.2: nobody listens). */
  setA(host: string, address: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * pebble-challtestsrv (Debian package pebble) as pebble's DNS server only: every name resolves to
 * 127.0.0.1, so pebble's HTTP-01 validation reaches a listener on this machine.
 */
export async function startChallTestSrv(): Promise<ChallTestSrvInstance> {
  const binary = requireBinary('pebble-challtestsrv', 'pebble');
  const dnsPort = await freePort();
  const managementPort = await freePort();
  const child = spawnManaged('pebble-challtestsrv', binary, [
    '-defaultIPv4',
    '127.0.0.1',
    '-defaultIPv6',
    '',
    '-dns01',
    `127.0.0.1:${dnsPort}`,
    '-management',
    `127.0.0.1:${managementPort}`,
    '-http01',
    '',
    '-https01',
    '',
    '-tlsalpn01',
    '',
  ]);
  try {
    await child.waitFor(/Starting management server/, 30_000);
    await waitForDns(`127.0.0.1:${dnsPort}`, child);
  } catch (error) {
    await child.kill();
    throw error;
  }
  return {
    dnsServer: `127.0.0.1:${dnsPort}`,
    process: child,
    async setA(host, address) {
      const body = JSON.stringify({ host: `${host.replace(/\.$/, '')}.`, addresses: [address] });
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          `http://127.0.0.1:${managementPort}/add-a`,
          { method: 'POST', timeout: 5000, headers: { 'content-type': 'application/json' } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
      if (status !== 200) throw new Error(`pebble-challtestsrv /add-a answered ${status}`);
    },
    stop: () => child.stop(),
  };
}

function httpsGetText(url: string, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: caPem, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        res.statusCode === 200
          ? resolve(body)
          : reject(new Error(`GET ${url}: ${res.statusCode} ${body}`)),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Resolves once the DNS server answers an A query (deadline 30 s). */
async function waitForDns(
  server: string,
  child: ManagedProcess,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([server]);
  let last = '';
  for (;;) {
    try {
      if ((await resolver.resolve4('ready.example.test')).length > 0) return;
    } catch (error) {
      last = (error as Error).message;
    }
    if (child.child.exitCode !== null || Date.now() > deadline)
      throw new Error(
        `${child.name} does not answer DNS at ${server} (${last}):\n${child.output().slice(-4000)}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
