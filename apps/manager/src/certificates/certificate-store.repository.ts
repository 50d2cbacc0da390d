import { splitPemBundle } from '@debvisor/pki';
import { Inject, Injectable } from '@nestjs/common';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { SecretBox } from '../pki/secret-box';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../pki/state-dir.repository';

const servedSchema = z.object({
  source: z.enum(['acme', 'custom']),
  chainPem: z.string(),
  keySealed: z.string(),
  installedAt: z.iso.datetime(),
  /** For ACME certificates: the account and names it was ordered with (renewal orders the same). */
  acmeAccountId: z.string().optional(),
});

const dnsSchema = z.object({
  server: z.string(),
  port: z.number().int(),
  keyName: z.string(),
  algorithm: z.enum(['hmac-sha256', 'hmac-sha512']),
  secretSealed: z.string(),
  propagationTimeoutSeconds: z.number().int(),
  ttl: z.number().int(),
});

const accountSchema = z.object({
  id: z.string(),
  name: z.string(),
  directoryUrl: z.string(),
  email: z.string().optional(),
  accountUrl: z.string(),
  keySealed: z.string(),
  eabKeyId: z.string().optional(),
  termsOfServiceUrl: z.string().optional(),
  createdAt: z.iso.datetime(),
});

const acmeStateSchema = z.object({
  accounts: z.array(accountSchema),
  settings: z
    .object({
      accountId: z.string(),
      domains: z.array(z.string()).min(1),
      challenge: z.enum(['http-01', 'dns-01']),
      dns: dnsSchema.optional(),
    })
    .optional(),
});

export type ServedRecord = z.infer<typeof servedSchema>;
export type AcmeAccountRecord = z.infer<typeof accountSchema>;
export type AcmeState = z.infer<typeof acmeStateSchema>;
export type AcmeSettingsRecord = NonNullable<AcmeState['settings']>;

/** A served certificate with its key opened. */
export interface ServedCertificate {
  readonly source: 'acme' | 'custom';
  readonly chainPem: string;
  readonly keyPem: string;
  readonly installedAt: Date;
  readonly acmeAccountId?: string;
}

const KEY_CONTEXT = 'https/served.key';

/**
 * The manager's HTTPS certificate and ACME state in the state directory (the self-signed default
 * stays in pki/, owned by the identity feature):
 *
 *   <stateDir>/https/served.json  the certificate served instead of the self-signed one (key sealed)
 *   <stateDir>/https/acme.json    ACME accounts (keys sealed) and the order settings (TSIG secret sealed)
 */
@Injectable()
export class CertificateStoreRepository {
  private readonly box: SecretBox;
  private readonly dir: string;

  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    @Inject(MANAGER_IDENTITY) identity: ManagerIdentity,
  ) {
    this.dir = join(config.stateDir, 'https');
    this.box = new SecretBox(identity.secretKey);
  }

  /** Read at start-up, before Nest: the certificate to serve, or undefined for the self-signed default. */
  static loadServed(stateDir: string, secretKey: Buffer): ServedCertificate | undefined {
    return readServed(join(stateDir, 'https'), new SecretBox(secretKey));
  }

  served(): ServedCertificate | undefined {
    return readServed(this.dir, this.box);
  }

  saveServed(served: ServedCertificate): void {
    const record: ServedRecord = {
      source: served.source,
      chainPem: served.chainPem,
      keySealed: this.box.seal(served.keyPem, KEY_CONTEXT),
      installedAt: served.installedAt.toISOString(),
      acmeAccountId: served.acmeAccountId,
    };
    writeAtomically(join(this.dir, 'served.json'), JSON.stringify(record, null, 2));
  }

  /** Back to the self-signed default. */
  clearServed(): void {
    writeAtomically(join(this.dir, 'served.json'), 'null');
  }

  acme(): AcmeState {
    const file = join(this.dir, 'acme.json');
    if (!existsSync(file)) return { accounts: [] };
    return acmeStateSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  }

  saveAcme(state: AcmeState): void {
    writeAtomically(
      join(this.dir, 'acme.json'),
      JSON.stringify(acmeStateSchema.parse(state), null, 2),
    );
  }

  /** Roots trusted besides the system's (DEBVISOR_EXTRA_CA_FILE), for uploaded chains. */
  extraRoots(): string[] {
    const file = this.config.certificates.extraCaFile;
    return file ? splitPemBundle(readFileSync(file, 'utf8')) : [];
  }

  seal(secret: string, context: string): string {
    return this.box.seal(secret, context);
  }

  open(sealed: string, context: string): string {
    return this.box.open(sealed, context);
  }
}

function readServed(dir: string, box: SecretBox): ServedCertificate | undefined {
  const file = join(dir, 'served.json');
  if (!existsSync(file)) return undefined;
  const parsed = servedSchema.nullable().parse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed) return undefined;
  return {
    source: parsed.source,
    chainPem: parsed.chainPem,
    keyPem: box.open(parsed.keySealed, KEY_CONTEXT),
    installedAt: new Date(parsed.installedAt),
    acmeAccountId: parsed.acmeAccountId,
  };
}

function writeAtomically(file: string, content: string): void {
  mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, content, { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, file);
}
