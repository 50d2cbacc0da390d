import { Inject, Injectable, Logger } from '@nestjs/common';
import { randomInt, randomUUID } from 'node:crypto';
import { AuditService } from '../audit/audit.service';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { MetricsService } from '../health/metrics.service';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../pki/state-dir.repository';
import { SchedulerService } from '../scheduler/scheduler.service';
import {
  AcmeError,
  AcmeRepository,
  ChallengeSetupError,
  type ChallengeSolver,
  type ChallengeToAnswer,
} from './acme.repository';
import {
  CertificateRejected,
  checkUpload,
  describeLeaf,
  type CertificateFacts,
} from './certificate-chain';
import {
  CertificateStoreRepository,
  type AcmeAccountRecord,
  type AcmeSettingsRecord,
} from './certificate-store.repository';
import { HttpChallengeRepository } from './http-challenge.repository';
import { HttpsEndpointRepository } from './https-endpoint.repository';
import { Rfc2136Repository, type Rfc2136Settings } from './rfc2136.repository';

export interface CreateAccountInput {
  name: string;
  directoryUrl: string;
  email?: string;
  termsOfServiceAgreed: boolean;
  externalAccountBinding?: { keyId: string; hmacKey: string };
}

export interface AcmeSettingsInput {
  accountId: string;
  domains: string[];
  challenge: 'http-01' | 'dns-01';
  /** Required for dns-01 (the DTO checks). */
  dns?: Omit<Rfc2136Settings, 'secret' | 'propagationTimeoutSeconds' | 'ttl'> & {
    secret?: string;
    propagationTimeoutSeconds?: number;
    ttl?: number;
  };
}

export interface CertificateView {
  source: 'self-signed' | 'acme' | 'custom';
  subject: string;
  issuer: string;
  names: string[];
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  fingerprintSha256: string;
}

export interface CertificatesStatus {
  current: CertificateView;
  renewal: {
    /** When the next automatic order is due (ACME certificates only). */
    dueAt: string | null;
    /** How the due time was chosen. */
    basis: 'ari' | 'two-thirds' | null;
    lastError: string | null;
    failures: number;
  };
  httpChallengeListener: { port: number | null; problem: string | null };
  accounts: AccountView[];
  settings: SettingsView | null;
}

export interface AccountView {
  id: string;
  name: string;
  directoryUrl: string;
  email: string | null;
  accountUrl: string;
  externalAccountBinding: boolean;
  termsOfServiceUrl: string | null;
  createdAt: string;
}

export interface SettingsView {
  accountId: string;
  domains: string[];
  challenge: 'http-01' | 'dns-01';
  dns: {
    server: string;
    port: number;
    keyName: string;
    algorithm: 'hmac-sha256' | 'hmac-sha512';
    propagationTimeoutSeconds: number;
    ttl: number;
  } | null;
}

const DNS_SECRET_CONTEXT = 'https/acme/tsig-secret';
/** The scheduler job of the renewal checks (registered once the HTTP-01 listener runs). */
const RENEWAL_JOB = 'certificates.renewal-check';
const accountKeyContext = (id: string) => `https/acme/account/${id}`;
/** Retries after a failed renewal: 1, 2, 4 … minutes, at most 6 hours apart. */
const BACKOFF_MIN_MS = 60_000;
const BACKOFF_MAX_MS = 6 * 3600_000;

/**
 * The manager's HTTPS certificate: the self-signed default, an uploaded one or one ordered over
 * ACME (HTTP-01 on the plain-HTTP listener, DNS-01 through RFC 2136), renewed before it expires and
 * swapped into the running HTTPS server without a restart.
 */
@Injectable()
export class CertificatesService {
  private readonly logger = new Logger(CertificatesService.name);
  /** The renewal checks' scheduler (injected as a property: the constructor's callers stay as they are). */
  @Inject(SchedulerService) private readonly scheduler!: SchedulerService;
  private ordering: Promise<CertificatesStatus> | undefined;
  private listenerProblem: string | undefined;
  private renewal = {
    dueAt: undefined as Date | undefined,
    basis: undefined as 'ari' | 'two-thirds' | undefined,
    /** The certificate the due time was worked out for. */
    forSerial: undefined as string | undefined,
    lastError: undefined as string | undefined,
    failures: 0,
    retryAt: undefined as Date | undefined,
  };

  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    @Inject(MANAGER_IDENTITY) private readonly identity: ManagerIdentity,
    private readonly store: CertificateStoreRepository,
    private readonly endpoint: HttpsEndpointRepository,
    private readonly httpChallenges: HttpChallengeRepository,
    private readonly acme: AcmeRepository,
    private readonly rfc2136: Rfc2136Repository,
    private readonly clock: ClockRepository,
    private readonly audit: AuditService,
    private readonly metrics: MetricsService,
  ) {}

  /** The certificate to start the HTTPS server with: the stored one, else the self-signed default. */
  static startupCertificate(
    stateDir: string,
    identity: ManagerIdentity,
  ): { chainPem: string; keyPem: string } {
    const served = CertificateStoreRepository.loadServed(stateDir, identity.secretKey);
    return served
      ? { chainPem: served.chainPem, keyPem: served.keyPem }
      : { chainPem: identity.server.certPem, keyPem: identity.server.keyPem };
  }

  /** Starts the HTTP-01 listener and the renewal checks (after the HTTPS server listens). */
  async start(): Promise<void> {
    const result = await this.httpChallenges.start(this.endpoint.port ?? 443);
    this.listenerProblem = result.problem;
    this.publishExpiry();
    if (result.problem) this.logger.warn(result.problem);
    else this.logger.log(`HTTP-01 and redirect listener on port ${result.port}`);
    if (this.scheduler.has(RENEWAL_JOB)) return;
    this.scheduler.register({
      name: RENEWAL_JOB,
      timing: { everyMs: this.config.certificates.renewCheckSeconds * 1000 },
      run: () => this.renewIfDue(),
    });
  }

  async stop(): Promise<void> {
    await this.scheduler.unregister(RENEWAL_JOB);
    await this.httpChallenges.stop();
  }

  async status(): Promise<CertificatesStatus> {
    const current = this.endpoint.current() ?? {
      chainPem: this.identity.server.certPem,
      keyPem: this.identity.server.keyPem,
    };
    if (this.source() === 'acme') await this.planRenewal().catch(() => undefined);
    const acme = this.store.acme();
    return {
      current: { source: this.source(), ...view(describeLeaf(current.chainPem)) },
      renewal: {
        dueAt: this.source() === 'acme' ? (this.nextAttempt()?.toISOString() ?? null) : null,
        basis: this.source() === 'acme' ? (this.renewal.basis ?? null) : null,
        lastError: this.renewal.lastError ?? null,
        failures: this.renewal.failures,
      },
      httpChallengeListener: {
        port: this.httpChallenges.port ?? null,
        problem: this.listenerProblem ?? null,
      },
      accounts: acme.accounts.map(accountView),
      settings: acme.settings ? settingsView(acme.settings) : null,
    };
  }

  async createAccount(input: CreateAccountInput): Promise<AccountView> {
    const state = this.store.acme();
    if (state.accounts.some((a) => a.name === input.name))
      throw new DomainError(ErrorCode.Conflict, `an ACME account named ${input.name} exists`);
    if (!input.termsOfServiceAgreed)
      throw new DomainError(
        ErrorCode.BadRequest,
        "the CA's terms of service must be agreed to (termsOfServiceAgreed: true)",
      );
    const created = await this.acmeCall(() =>
      this.acme.createAccount({
        directoryUrl: input.directoryUrl,
        email: input.email,
        termsOfServiceAgreed: true,
        externalAccountBinding: input.externalAccountBinding && {
          kid: input.externalAccountBinding.keyId,
          hmacKey: input.externalAccountBinding.hmacKey,
        },
      }),
    );
    const id = randomUUID();
    const record: AcmeAccountRecord = {
      id,
      name: input.name,
      directoryUrl: input.directoryUrl,
      email: input.email,
      accountUrl: created.accountUrl,
      keySealed: this.store.seal(created.accountKeyPem, accountKeyContext(id)),
      eabKeyId: input.externalAccountBinding?.keyId,
      termsOfServiceUrl: created.termsOfServiceUrl,
      createdAt: this.clock.now().toISOString(),
    };
    this.store.saveAcme({
      ...this.store.acme(),
      accounts: [...this.store.acme().accounts, record],
    });
    this.audit.note({ accountId: id, directoryUrl: input.directoryUrl });
    return accountView(record);
  }

  deleteAccount(id: string): void {
    const state = this.store.acme();
    if (!state.accounts.some((a) => a.id === id)) throw DomainError.notFound('ACME account');
    if (state.settings?.accountId === id)
      throw new DomainError(
        ErrorCode.Conflict,
        'the ACME settings use this account: point them at another account first',
      );
    this.store.saveAcme({ ...state, accounts: state.accounts.filter((a) => a.id !== id) });
  }

  setSettings(input: AcmeSettingsInput): SettingsView {
    const state = this.store.acme();
    if (!state.accounts.some((a) => a.id === input.accountId))
      throw new DomainError(ErrorCode.BadRequest, `no ACME account ${input.accountId}`);
    const domains = [...new Set(input.domains.map((d) => d.toLowerCase()))];
    if (input.challenge === 'http-01' && domains.some((d) => d.startsWith('*.')))
      throw new DomainError(
        ErrorCode.BadRequest,
        'wildcard names can only be validated with dns-01',
      );
    let dns: AcmeSettingsRecord['dns'];
    if (input.challenge === 'dns-01' && input.dns) {
      const secretSealed = input.dns.secret
        ? this.store.seal(input.dns.secret, DNS_SECRET_CONTEXT)
        : state.settings?.dns?.secretSealed;
      if (!secretSealed)
        throw new DomainError(ErrorCode.BadRequest, 'dns.secret: the TSIG secret is required');
      dns = {
        server: input.dns.server,
        port: input.dns.port,
        keyName: input.dns.keyName,
        algorithm: input.dns.algorithm,
        secretSealed,
        propagationTimeoutSeconds: input.dns.propagationTimeoutSeconds ?? 120,
        ttl: input.dns.ttl ?? 60,
      };
    }
    const settings: AcmeSettingsRecord = {
      accountId: input.accountId,
      domains,
      challenge: input.challenge,
      dns,
    };
    this.store.saveAcme({ ...state, settings });
    return settingsView(settings);
  }

  /** Orders a certificate now with the saved settings and serves it; on failure the old one stays. */
  async orderNow(): Promise<CertificatesStatus> {
    if (this.ordering) throw new DomainError(ErrorCode.Conflict, 'an order is already running');
    this.ordering = this.order().finally(() => (this.ordering = undefined));
    return this.ordering;
  }

  async upload(input: { chainPem: string; keyPem: string }): Promise<CertificatesStatus> {
    let checked: { chainPem: string; keyPem: string };
    try {
      checked = checkUpload({
        ...input,
        host: this.publicHost(),
        now: this.clock.now(),
        extraRoots: this.store.extraRoots(),
      });
    } catch (error) {
      if (error instanceof CertificateRejected)
        throw new DomainError(ErrorCode.BadRequest, error.message);
      throw error;
    }
    this.install({ source: 'custom', ...checked });
    this.audit.note({ fingerprintSha256: describeLeaf(checked.chainPem).fingerprintSha256 });
    return this.status();
  }

  /** Revokes the served ACME certificate at its CA and goes back to the self-signed default. */
  async revoke(): Promise<CertificatesStatus> {
    const served = this.store.served();
    if (served?.source !== 'acme' || !served.acmeAccountId)
      throw new DomainError(ErrorCode.Conflict, 'the served certificate was not issued over ACME');
    const account = this.account(served.acmeAccountId);
    await this.acmeCall(() => this.acme.revoke(account, served.chainPem));
    this.audit.note({ serialNumber: describeLeaf(served.chainPem).serialNumber });
    return this.useSelfSigned();
  }

  async useSelfSigned(): Promise<CertificatesStatus> {
    this.store.clearServed();
    this.endpoint.swap(this.identity.server.certPem, this.identity.server.keyPem);
    this.publishExpiry();
    this.resetRenewal();
    return this.status();
  }

  /** The renewal check: orders again when the served ACME certificate is due (retrying with back-off). */
  async renewIfDue(): Promise<void> {
    if (this.source() !== 'acme' || this.ordering) return;
    await this.planRenewal().catch((error: unknown) =>
      this.logger.warn(`renewal information unavailable: ${(error as Error).message}`),
    );
    const next = this.nextAttempt();
    if (!next || next > this.clock.now()) return;
    const served = this.store.served();
    try {
      this.ordering = this.order();
      await this.ordering;
      await this.audit.systemEvent({
        action: 'system.certificate.renew',
        target: '/system/certificates',
        outcome: 'success',
        details: { previousSerial: served ? describeLeaf(served.chainPem).serialNumber : null },
      });
    } catch (error) {
      await this.audit.systemEvent({
        action: 'system.certificate.renew',
        target: '/system/certificates',
        outcome: 'failure',
        details: { reason: (error as Error).message, failures: this.renewal.failures },
      });
    } finally {
      this.ordering = undefined;
    }
  }

  private async order(): Promise<CertificatesStatus> {
    const settings = this.store.acme().settings;
    if (!settings)
      throw new DomainError(
        ErrorCode.Conflict,
        'no ACME settings: choose an account, names and a challenge first',
      );
    const account = this.account(settings.accountId);
    try {
      const issued = await this.acmeCall(() =>
        this.acme.order(account, settings.domains, this.solver(settings)),
      );
      this.install({ source: 'acme', ...issued, acmeAccountId: settings.accountId });
      this.resetRenewal();
      this.audit.note({ serialNumber: describeLeaf(issued.chainPem).serialNumber });
      return this.status();
    } catch (error) {
      this.renewal.failures += 1;
      this.renewal.lastError = (error as Error).message;
      const backoff = Math.min(BACKOFF_MIN_MS * 2 ** (this.renewal.failures - 1), BACKOFF_MAX_MS);
      this.renewal.retryAt = new Date(this.clock.now().getTime() + backoff);
      this.logger.warn(
        `certificate order failed (the served certificate stays): ${this.renewal.lastError}`,
      );
      throw error;
    }
  }

  private solver(settings: AcmeSettingsRecord): ChallengeSolver {
    if (settings.challenge === 'http-01') {
      if (this.httpChallenges.port === undefined)
        throw new DomainError(
          ErrorCode.Conflict,
          `HTTP-01 needs the plain-HTTP listener: ${this.listenerProblem ?? 'it is not running'}`,
        );
      return {
        type: 'http-01',
        present: async (c) => this.httpChallenges.add(c.token, c.keyAuthorization),
        cleanUp: async (c) => this.httpChallenges.remove(c.token),
      };
    }
    const dns = settings.dns!;
    const rfc: Rfc2136Settings = {
      server: dns.server,
      port: dns.port,
      keyName: dns.keyName,
      algorithm: dns.algorithm,
      secret: this.store.open(dns.secretSealed, DNS_SECRET_CONTEXT),
      propagationTimeoutSeconds: dns.propagationTimeoutSeconds,
      ttl: dns.ttl,
    };
    // acme-client hands dns-01 challenges the TXT value itself: base64url(SHA-256(key authorization)).
    const value = (c: ChallengeToAnswer) => c.keyAuthorization;
    return {
      type: 'dns-01',
      present: async (c) => {
        const name = await this.rfc2136.recordName(rfc, c.identifier);
        const zone = await this.rfc2136.addTxt(rfc, name, value(c));
        await this.rfc2136.waitForPropagation(rfc, zone, name, value(c));
      },
      cleanUp: async (c) => {
        const name = await this.rfc2136.recordName(rfc, c.identifier);
        await this.rfc2136.deleteTxt(rfc, name, value(c));
      },
    };
  }

  private install(cert: {
    source: 'acme' | 'custom';
    chainPem: string;
    keyPem: string;
    acmeAccountId?: string;
  }): void {
    this.store.saveServed({ ...cert, installedAt: this.clock.now() });
    this.endpoint.swap(cert.chainPem, cert.keyPem);
    this.publishExpiry();
    const facts = describeLeaf(cert.chainPem);
    this.logger.log(
      `now serving a ${cert.source} certificate for ${facts.names.join(', ')} until ${facts.notAfter.toISOString()}`,
    );
  }

  /** Works out when the served ACME certificate is due: ARI's window when offered, else 2/3 of its lifetime. */
  private async planRenewal(): Promise<void> {
    const served = this.store.served();
    if (served?.source !== 'acme' || !served.acmeAccountId) return;
    const facts = describeLeaf(served.chainPem);
    if (this.renewal.forSerial === facts.serialNumber && this.renewal.dueAt) return;
    const account = this.store.acme().accounts.find((a) => a.id === served.acmeAccountId);
    const window = account
      ? await this.acme.renewalWindow(account.directoryUrl, served.chainPem).catch(() => undefined)
      : undefined;
    if (window) {
      const span = window.end.getTime() - window.start.getTime();
      this.renewal.dueAt = new Date(window.start.getTime() + (span > 0 ? randomInt(span) : 0));
      this.renewal.basis = 'ari';
    } else {
      const lifetime = facts.notAfter.getTime() - facts.notBefore.getTime();
      this.renewal.dueAt = new Date(facts.notBefore.getTime() + (lifetime * 2) / 3);
      this.renewal.basis = 'two-thirds';
    }
    this.renewal.forSerial = facts.serialNumber;
  }

  private nextAttempt(): Date | undefined {
    const { dueAt, retryAt } = this.renewal;
    if (!dueAt) return undefined;
    return retryAt && retryAt > dueAt ? retryAt : dueAt;
  }

  private resetRenewal(): void {
    this.renewal = {
      dueAt: undefined,
      basis: undefined,
      forSerial: undefined,
      lastError: undefined,
      failures: 0,
      retryAt: undefined,
    };
  }

  /** debvisor_certificate_expiry_timestamp_seconds{cert="https"}: the certificate served now. */
  private publishExpiry(): void {
    const current = this.endpoint.current();
    if (current)
      this.metrics.rpc.setCertificateExpiry('https', describeLeaf(current.chainPem).notAfter);
  }

  private source(): 'self-signed' | 'acme' | 'custom' {
    return this.store.served()?.source ?? 'self-signed';
  }

  private account(id: string) {
    const record = this.store.acme().accounts.find((a) => a.id === id);
    if (!record) throw new DomainError(ErrorCode.Conflict, `the ACME account ${id} is gone`);
    return {
      directoryUrl: record.directoryUrl,
      accountUrl: record.accountUrl,
      accountKeyPem: this.store.open(record.keySealed, accountKeyContext(id)),
    };
  }

  private async acmeCall<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof AcmeError || error instanceof ChallengeSetupError)
        throw new DomainError(ErrorCode.CertificateOrderFailed, error.message, { cause: error });
      throw error;
    }
  }

  private publicHost(): string | undefined {
    return this.config.publicUrl
      ? new URL(this.config.publicUrl).hostname.replace(/^\[|\]$/g, '')
      : undefined;
  }
}

function view(facts: CertificateFacts): Omit<CertificateView, 'source'> {
  return {
    subject: facts.subject,
    issuer: facts.issuer,
    names: [...facts.names],
    serialNumber: facts.serialNumber,
    notBefore: facts.notBefore.toISOString(),
    notAfter: facts.notAfter.toISOString(),
    fingerprintSha256: facts.fingerprintSha256,
  };
}

function accountView(a: AcmeAccountRecord): AccountView {
  return {
    id: a.id,
    name: a.name,
    directoryUrl: a.directoryUrl,
    email: a.email ?? null,
    accountUrl: a.accountUrl,
    externalAccountBinding: a.eabKeyId !== undefined,
    termsOfServiceUrl: a.termsOfServiceUrl ?? null,
    createdAt: a.createdAt,
  };
}

function settingsView(s: AcmeSettingsRecord): SettingsView {
  return {
    accountId: s.accountId,
    domains: s.domains,
    challenge: s.challenge,
    dns: s.dns
      ? {
          server: s.dns.server,
          port: s.dns.port,
          keyName: s.dns.keyName,
          algorithm: s.dns.algorithm,
          propagationTimeoutSeconds: s.dns.propagationTimeoutSeconds,
          ttl: s.dns.ttl,
        }
      : null,
  };
}
