import { createCa, issueCertificate, splitPemBundle, type KeyPairPem } from '@debvisor/pki';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { LiveClientCertificate } from './client-certificate';

/** What the manager keeps in its state directory, loaded (and created on the first start). */
export interface ManagerIdentity {
  /** HTTPS: the certificate chain (leaf, then the manager's own server CA) and its key. */
  readonly server: KeyPairPem & {
    readonly caPem: string;
    readonly certFile: string;
    readonly caFile: string;
  };
  /**
   * mTLS to agents: the client CA operators add to agents' tls.clientCas, and the short-lived client
   * certificate the manager presents (renewed by ClientCertificateService).
   */
  readonly client: KeyPairPem & { readonly caPem: string; readonly caFile: string };
  /** AES-256-GCM key for secrets at rest (credential API keys). */
  readonly secretKey: Buffer;
}

export const MANAGER_IDENTITY = Symbol('MANAGER_IDENTITY');

/**
 * The state directory on disk:
 *
 *   <stateDir>/secret.key            32-byte key, base64 (0600)
 *   <stateDir>/postgres.password     embedded PostgreSQL password (0600)
 *   <stateDir>/postgres-app.password embedded PostgreSQL runtime role's password (0600)
 *   <stateDir>/postgres/             embedded PostgreSQL data
 *   <stateDir>/pki/server-ca.crt|key the CA of the HTTPS certificate (clients may pin it)
 *   <stateDir>/pki/server.crt|key    the HTTPS certificate (chain: leaf, CA) and key
 *   <stateDir>/pki/client-ca.crt|key the manager's client CA: add client-ca.crt to agents' tls.clientCas
 *   <stateDir>/pki/client.crt|key    the client certificate the manager presents to agents
 *                                    (short-lived: rewritten at each renewal)
 *
 * Everything is created on the first start and reused afterwards.
 */
export class StateDirRepository {
  constructor(readonly stateDir: string) {}

  get pkiDir(): string {
    return join(this.stateDir, 'pki');
  }

  get postgresDir(): string {
    return join(this.stateDir, 'postgres');
  }

  /**
   * Creates the state directory. It stays traversable (0711) so that an embedded PostgreSQL running
   * as its own user reaches its data directory; every secret file inside is 0600.
   */
  ensureStateDir(): void {
    mkdirSync(this.stateDir, { recursive: true, mode: 0o711 });
    mkdirSync(this.pkiDir, { recursive: true, mode: 0o700 });
  }

  async loadIdentity(serverNames: {
    dnsNames: string[];
    ipAddresses: string[];
  }): Promise<ManagerIdentity & { client: LiveClientCertificate }> {
    this.ensureStateDir();
    const server = await this.loadOrCreateServerTls(serverNames);
    const client = await this.loadOrCreateClientIdentity();
    return { server, client, secretKey: this.loadOrCreateSecretKey() };
  }

  /** The host names the HTTPS certificate is issued for, besides what the configuration adds. */
  static defaultServerNames(): { dnsNames: string[]; ipAddresses: string[] } {
    const names = new Set(['localhost']);
    const host = hostname();
    if (/^[A-Za-z0-9.-]+$/.test(host)) names.add(host);
    return { dnsNames: [...names], ipAddresses: ['127.0.0.1', '::1'] };
  }

  private async loadOrCreateServerTls(names: {
    dnsNames: string[];
    ipAddresses: string[];
  }): Promise<ManagerIdentity['server']> {
    const caFile = join(this.pkiDir, 'server-ca.crt');
    const certFile = join(this.pkiDir, 'server.crt');
    const ca = await this.loadOrCreatePair(caFile, join(this.pkiDir, 'server-ca.key'), () =>
      createCa(`DebVisor manager ${hostname()} HTTPS CA`),
    );
    const leaf = await this.loadOrCreatePair(certFile, join(this.pkiDir, 'server.key'), () =>
      issueCertificate(ca, {
        commonName: names.dnsNames[0] ?? 'localhost',
        organizationalUnit: 'debvisor-manager',
        dnsNames: names.dnsNames,
        ipAddresses: names.ipAddresses,
        usage: 'server',
      }),
    );
    return { ...leaf, caPem: ca.certPem, certFile, caFile };
  }

  private async loadOrCreateClientIdentity(): Promise<LiveClientCertificate> {
    const caFile = join(this.pkiDir, 'client-ca.crt');
    const ca = await this.loadOrCreatePair(caFile, join(this.pkiDir, 'client-ca.key'), () =>
      createCa(`DebVisor manager ${hostname()} client CA`),
    );
    const issue = () =>
      issueCertificate(ca, {
        commonName: `manager:${hostname()}`,
        organizationalUnit: 'debvisor-manager',
        usage: 'client',
        // Renewed at once by ClientCertificateService into one of the configured lifetime.
        validDays: 1,
      });
    let client = await this.loadOrCreatePair(this.clientCertFile, this.clientKeyFile, issue);
    // A crash between the two writes of a renewal leaves a key that does not fit: issue anew.
    if (!keyMatches(client)) {
      client = await issue();
      this.writeClientCertificate(client);
    }
    return new LiveClientCertificate(client, ca.certPem, caFile);
  }

  /** The manager's client CA with its key: it signs the manager's own client certificates. */
  readClientCa(): KeyPairPem {
    return {
      certPem: readFileSync(join(this.pkiDir, 'client-ca.crt'), 'utf8'),
      keyPem: readFileSync(join(this.pkiDir, 'client-ca.key'), 'utf8'),
    };
  }

  /** Stores a renewed client certificate (chain) and its key; a restart presents them. */
  writeClientCertificate(pair: KeyPairPem): void {
    writeAtomically(this.clientKeyFile, pair.keyPem, 0o600);
    writeAtomically(this.clientCertFile, pair.certPem, 0o644);
  }

  private get clientCertFile(): string {
    return join(this.pkiDir, 'client.crt');
  }

  private get clientKeyFile(): string {
    return join(this.pkiDir, 'client.key');
  }

  private loadOrCreateSecretKey(): Buffer {
    const file = join(this.stateDir, 'secret.key');
    const text = this.readOrCreate(file, () => randomBytes(32).toString('base64') + '\n');
    const key = Buffer.from(text.trim(), 'base64');
    if (key.length !== 32) throw new Error(`${file} does not hold a 32-byte base64 key`);
    return key;
  }

  /** The embedded PostgreSQL's superuser password, generated on the first start. */
  loadOrCreateDatabasePassword(): string {
    this.ensureStateDir();
    return this.readOrCreate(
      join(this.stateDir, 'postgres.password'),
      () => randomBytes(24).toString('base64url') + '\n',
    ).trim();
  }

  /**
   * The password of the embedded PostgreSQL's runtime role (`debvisor_app`, which the manager serves
   * with), generated on the first start.
   */
  loadOrCreateAppDatabasePassword(): string {
    this.ensureStateDir();
    return this.readOrCreate(
      join(this.stateDir, 'postgres-app.password'),
      () => randomBytes(24).toString('base64url') + '\n',
    ).trim();
  }

  private async loadOrCreatePair(
    certFile: string,
    keyFile: string,
    create: () => Promise<KeyPairPem>,
  ): Promise<KeyPairPem> {
    if (existsSync(certFile) && existsSync(keyFile)) {
      return { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
    }
    const pair = await create();
    writeAtomically(keyFile, pair.keyPem, 0o600);
    writeAtomically(certFile, pair.certPem, 0o644);
    return pair;
  }

  private readOrCreate(file: string, create: () => string): string {
    if (existsSync(file)) {
      // A secret readable by others was copied carelessly; tighten it rather than fail.
      if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
      return readFileSync(file, 'utf8');
    }
    const content = create();
    writeAtomically(file, content, 0o600);
    return content;
  }
}

function writeAtomically(file: string, content: string, mode: number): void {
  mkdirSync(dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, content, { mode, flag: 'w' });
  chmodSync(temporary, mode);
  renameSync(temporary, file);
}

function keyMatches(pair: KeyPairPem): boolean {
  try {
    const leaf = new X509Certificate(splitPemBundle(pair.certPem)[0]);
    return leaf.checkPrivateKey(createPrivateKey(pair.keyPem));
  } catch {
    return false;
  }
}
