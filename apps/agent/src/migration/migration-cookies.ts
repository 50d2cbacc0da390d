import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { MigrationPsk } from '../drivers/hypervisor.driver';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Clock } from '../shared/clock';

const PREFIX = 'dvmc_';
/** How long a used or expired cookie is remembered, so that a second try gets a precise refusal. */
const TOMBSTONE_MS = 10 * 60_000;
const MAX_TOMBSTONES = 10_000;

/** What a cookie is bound to: one VM, one migration, this target node. */
export interface CookieBinding {
  vmUuid: string;
  migrationId: string;
}

interface Issued extends CookieBinding {
  expiresAt: number;
}

/**
 * One-time migration cookies of a target node. A cookie is 256 random bits, kept only as its
 * SHA-256; it is bound to one VM and one migration, expires after the TTL, and the first
 * presentation uses it up, whether or not it then matches.
 */
export class MigrationCookies {
  private readonly issued = new Map<string, Issued>();
  private readonly spent = new Map<string, { reason: string; until: number }>();

  constructor(private readonly clock: Clock) {}

  issue(binding: CookieBinding, ttlMs: number): { cookie: string; expiresAt: Date } {
    const cookie = PREFIX + randomBytes(32).toString('base64url');
    const expiresAt = this.clock.now().getTime() + ttlMs;
    this.issued.set(hashOf(cookie), { ...binding, expiresAt });
    return { cookie, expiresAt: new Date(expiresAt) };
  }

  /** Uses the cookie up; refuses it when unknown, used, expired, or bound to another VM or migration. */
  claim(cookie: string, presented: CookieBinding): void {
    const hash = hashOf(cookie);
    const now = this.clock.now().getTime();
    this.prune(now);
    const record = this.issued.get(hash);
    if (!record) {
      const spent = this.spent.get(hash);
      throw new AgentError(
        spent ? ErrorCode.PermissionDenied : ErrorCode.Unauthenticated,
        spent ? spent.reason : 'unknown migration cookie',
      );
    }
    this.issued.delete(hash);
    if (record.expiresAt <= now)
      return this.refuse(
        hash,
        `the migration cookie expired at ${new Date(record.expiresAt).toISOString()}`,
        now,
      );
    this.remember(hash, 'the migration cookie was already used', now);
    if (record.vmUuid !== presented.vmUuid)
      throw new AgentError(
        ErrorCode.PermissionDenied,
        `the migration cookie is for another VM, not ${presented.vmUuid}`,
      );
    if (record.migrationId !== presented.migrationId)
      throw new AgentError(
        ErrorCode.PermissionDenied,
        'the migration cookie is for another migration',
      );
  }

  /** Drops a migration's unused cookie (the reservation was cancelled or expired). */
  revoke(migrationId: string, reason: string): void {
    const now = this.clock.now().getTime();
    for (const [hash, record] of this.issued) {
      if (record.migrationId === migrationId) {
        this.issued.delete(hash);
        this.remember(hash, reason, now);
      }
    }
  }

  private refuse(hash: string, reason: string, now: number): never {
    this.remember(hash, reason, now);
    throw new AgentError(ErrorCode.PermissionDenied, reason);
  }

  private remember(hash: string, reason: string, now: number): void {
    if (this.spent.size >= MAX_TOMBSTONES) this.spent.delete(this.spent.keys().next().value!);
    this.spent.set(hash, { reason, until: now + TOMBSTONE_MS });
  }

  private prune(now: number): void {
    for (const [hash, record] of this.issued)
      if (record.expiresAt <= now) {
        this.issued.delete(hash);
        this.remember(
          hash,
          `the migration cookie expired at ${new Date(record.expiresAt).toISOString()}`,
          now,
        );
      }
    for (const [hash, tomb] of this.spent) if (tomb.until <= now) this.spent.delete(hash);
  }
}

/** A resume credential is told from a cookie by its prefix (both come in the tunnel's opening frame). */
export const RESUME_PREFIX = 'dvmr_';

/**
 * The one-time credential with which a source resumes a post-copy migration whose link broke: the
 * target hands it out on the migration's authenticated control stream (right after the cookie's
 * claim, and again after each resumption), kept only as its SHA-256. It is bound to the migration,
 * to its VM and to the exact peer certificate that claimed the cookie, and it works once. It does
 * not expire while the migration is unfinished: resuming is the only way to keep the VM.
 */
export class ResumeCredential {
  private constructor(
    private readonly hash: Buffer,
    readonly binding: CookieBinding,
    /** SHA-256 of the DER of the peer certificate that claimed the migration. */
    readonly peer: string,
  ) {}

  /** A fresh credential: the secret for the source, the record for the target. */
  static issue(
    binding: CookieBinding,
    peerCertificate: Buffer,
  ): { credential: string; record: ResumeCredential } {
    const credential = RESUME_PREFIX + randomBytes(32).toString('base64url');
    return {
      credential,
      record: new ResumeCredential(
        createHash('sha256').update(credential).digest(),
        binding,
        certificateFingerprint(peerCertificate),
      ),
    };
  }

  /**
   * Why `credential`, shown by `peerCertificate` for `presented`, is refused; undefined when it is
   * good. The caller uses the credential up once it is good.
   */
  refusal(
    credential: string,
    presented: CookieBinding,
    peerCertificate: Buffer | undefined,
  ): { code: ErrorCode; reason: string } | undefined {
    const hash = createHash('sha256').update(credential).digest();
    if (!timingSafeEqual(hash, this.hash))
      return { code: ErrorCode.PermissionDenied, reason: 'unknown or used resume credential' };
    if (
      presented.migrationId !== this.binding.migrationId ||
      presented.vmUuid !== this.binding.vmUuid
    )
      return {
        code: ErrorCode.PermissionDenied,
        reason: 'the resume credential is for another migration',
      };
    if (!peerCertificate || certificateFingerprint(peerCertificate) !== this.peer)
      return {
        code: ErrorCode.PermissionDenied,
        reason:
          'the resume credential works only from the agent certificate that opened the migration',
      };
    return undefined;
  }
}

function certificateFingerprint(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/** The TLS pre-shared key of the direct transport, derived from the cookie by both ends. */
export function pskOf(cookie: string, binding: CookieBinding): MigrationPsk {
  const key = createHmac('sha256', cookie)
    .update(`debvisor-migration-psk\n${binding.migrationId}\n${binding.vmUuid}`)
    .digest();
  return { identity: `debvisor-${binding.migrationId.replace(/-/g, '').slice(0, 16)}`, key };
}

function hashOf(cookie: string): string {
  return createHash('sha256').update(cookie).digest('hex');
}
