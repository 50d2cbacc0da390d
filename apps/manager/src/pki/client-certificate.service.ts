import { createCsr, renewFromCsr, splitPemBundle, type KeyPairPem } from '@debvisor/pki';
import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { createPrivateKey, randomInt, X509Certificate } from 'node:crypto';
import { ClockRepository } from '../common/clock.repository';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { MetricsService } from '../health/metrics.service';
import { SchedulerService } from '../scheduler/scheduler.service';
import { LiveClientCertificate } from './client-certificate';
import { MANAGER_IDENTITY, StateDirRepository, type ManagerIdentity } from './state-dir.repository';

const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 60_000;
/** A certificate that outlives the configured lifetime by more than this is replaced at start. */
const LIFETIME_SLACK_MS = 120_000;

/** Jitter of the renewal instant: a number in [0, 1). */
export const RENEWAL_JITTER = Symbol('RENEWAL_JITTER');

/**
 * Keeps the manager's client certificate for the agents short-lived, as the agents keep theirs: at
 * a jittered 70–90 % of its lifetime it makes a new key and a CSR (the key never leaves the
 * manager), has the manager's client CA sign the CSR's public key for the same subject, stores the
 * pair and switches to it. The gRPC channels to agents open new connections with the new
 * certificate while calls on the old ones finish (AgentClientRepository). A failure is retried with
 * back-off (1 s doubling to 60 s); a stored certificate that does not fit (longer than the lifetime,
 * or expired) is replaced at start, before anything calls an agent. Both run on the scheduler.
 */
@Injectable()
export class ClientCertificateService implements OnModuleInit {
  private readonly logger = new Logger(ClientCertificateService.name);
  private failures = 0;
  /** The renewal instant of the certificate presented now (its jitter drawn once). */
  private planned: { fingerprint: string; at: Date } | undefined;

  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    @Inject(MANAGER_IDENTITY) private readonly identity: ManagerIdentity,
    private readonly files: StateDirRepository,
    private readonly clock: ClockRepository,
    private readonly metrics: MetricsService,
    private readonly scheduler: SchedulerService,
    @Inject(RENEWAL_JITTER) private readonly jitter: () => number,
  ) {}

  onModuleInit(): void {
    this.scheduler.register({
      name: 'pki.client-certificate.start',
      timing: { atStart: true },
      run: () => this.replaceUnfit(),
    });
    this.scheduler.register({
      name: 'pki.client-certificate.renew',
      timing: { next: (now) => this.nextRunAt(now) },
      run: () => this.renewScheduled(),
    });
  }

  private get lifetimeMs(): number {
    return this.config.certificates.clientLifetimeSeconds * 1000;
  }

  private get client(): LiveClientCertificate {
    const client = this.identity.client;
    if (!(client instanceof LiveClientCertificate))
      throw new Error('the client certificate was not loaded from the state directory');
    return client;
  }

  /** Renews at once when the stored certificate outlives the configured lifetime or expired. */
  async replaceUnfit(): Promise<void> {
    const leaf = this.client.leaf;
    const now = this.clock.now().getTime();
    const notAfter = Date.parse(leaf.validTo);
    if (notAfter > now + this.lifetimeMs + LIFETIME_SLACK_MS || notAfter <= now)
      await this.renew('start');
    this.publishExpiry();
  }

  /** The instant of the next renewal: notBefore + (0.7 … 0.9) × lifetime. */
  dueAt(): Date {
    const fingerprint = this.client.fingerprint;
    if (this.planned?.fingerprint === fingerprint) return this.planned.at;
    const leaf = this.client.leaf;
    const from = Date.parse(leaf.validFrom);
    const lifetime = Date.parse(leaf.validTo) - from;
    const at = new Date(from + lifetime * (0.7 + 0.2 * this.jitter()));
    this.planned = { fingerprint, at };
    return at;
  }

  /** After a failure, the back-off; otherwise the certificate's renewal instant. */
  nextRunAt(now: Date): Date {
    if (this.failures === 0) return this.dueAt();
    const retryMs = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1));
    return new Date(now.getTime() + retryMs);
  }

  /** A planned renewal; a failure is thrown for the scheduler to log and count, and retried. */
  async renewScheduled(): Promise<void> {
    try {
      await this.renew('scheduled');
      this.failures = 0;
    } catch (error) {
      this.failures++;
      throw new Error(`client certificate renewal failed (${this.failures} in a row)`, {
        cause: error,
      });
    }
  }

  private async renew(reason: string): Promise<void> {
    const current = this.client.leaf;
    const { csrPem, keyPem } = await createCsr(commonNameOf(current), 'debvisor-manager');
    const ca: KeyPairPem = this.files.readClientCa();
    const caCert = new X509Certificate(splitPemBundle(ca.certPem)[0]);
    const notAfter = new Date(
      Math.min(this.clock.now().getTime() + this.lifetimeMs, Date.parse(caCert.validTo)),
    );
    // The CSR's public key for the subject, names and usages of the certificate presented now.
    const certPem = await renewFromCsr(ca, csrPem, {
      currentCertPem: this.client.certPem,
      notAfter,
    });
    const leaf = new X509Certificate(splitPemBundle(certPem)[0]);
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem)))
      throw new Error('the client CA answered a certificate for another key');
    this.files.writeClientCertificate({ certPem, keyPem });
    this.client.replace({ certPem, keyPem });
    this.publishExpiry();
    this.logger.log(
      `client certificate for the agents renewed (${reason}): serial ${leaf.serialNumber}, valid to ${new Date(leaf.validTo).toISOString()}`,
    );
  }

  private publishExpiry(): void {
    this.metrics.rpc.setCertificateExpiry('client', new Date(this.client.leaf.validTo));
  }
}

/** The CN of a certificate's subject (`manager:<host>`). */
function commonNameOf(cert: X509Certificate): string {
  return /^CN=(.*)$/m.exec(cert.subject)?.[1] ?? 'manager';
}

/** The default jitter: uniform in [0, 1). */
export function uniformJitter(): number {
  return randomInt(0, 1_000_000) / 1_000_000;
}
