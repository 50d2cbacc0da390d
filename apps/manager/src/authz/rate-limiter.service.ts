import { Inject, Injectable } from '@nestjs/common';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';

/** A request refused by a limit: the answer is 429 with Retry-After. */
export class RateLimited extends DomainError {
  constructor(
    readonly limit: string,
    readonly retryAfterSeconds: number,
    message: string,
  ) {
    super(ErrorCode.RateLimited, message);
    this.name = 'RateLimited';
  }
}

/**
 * The manager's rate limits, counted in this process: API requests per principal (a user, or a
 * group for its tokens: more tokens buy no more requests) and for the whole manager, and password /
 * second-factor attempts per source address.
 *
 * A request is checked against its principal's limits first; only a request they let through is
 * charged to the manager's budget, so refused calls cost others nothing. One principal may take at
 * most half of that budget in a second, and administrators (Admin on `/`) are never refused by it:
 * whoever floods, an administrator can still reach the manager to stop it.
 */
@Injectable()
export class RateLimiterService {
  private readonly perPrincipal: RateLimiterMemory;
  private readonly shareOfGlobal: RateLimiterMemory;
  private readonly global: RateLimiterMemory;
  private readonly loginPerSource: RateLimiterMemory;

  constructor(@Inject(MANAGER_CONFIG) config: ManagerConfig) {
    this.perPrincipal = new RateLimiterMemory({
      keyPrefix: 'principal',
      points: config.access.rateLimitPerPrincipal,
      duration: 60,
    });
    this.shareOfGlobal = new RateLimiterMemory({
      keyPrefix: 'share',
      points: Math.max(1, Math.ceil(config.access.rateLimitGlobal / 2)),
      duration: 1,
    });
    this.global = new RateLimiterMemory({
      keyPrefix: 'global',
      points: config.access.rateLimitGlobal,
      duration: 1,
    });
    this.loginPerSource = new RateLimiterMemory({
      keyPrefix: 'login',
      points: config.access.loginAttemptsPerMinute,
      duration: 60,
    });
  }

  /**
   * One API request of `principal` (`user:alice@local`, `group:ops`); throws RateLimited when it is
   * over its own limits or, unless `administrator`, the manager as a whole is over its limit.
   */
  async request(principal: string, administrator: boolean): Promise<void> {
    await this.consume(
      this.perPrincipal,
      principal,
      'principal',
      'too many requests from this principal; retry later',
    );
    if (administrator) return;
    try {
      await this.consume(
        this.shareOfGlobal,
        principal,
        'global',
        'the manager is answering too many requests; retry later',
      );
      await this.consume(
        this.global,
        'all',
        'global',
        'the manager is answering too many requests; retry later',
      );
    } catch (refusal) {
      // Refused: it was not answered, so it does not count against the principal's own minute.
      await this.perPrincipal.reward(principal).catch(() => undefined);
      throw refusal;
    }
  }

  /** One password or second-factor attempt from `source`. */
  async loginAttempt(source: string): Promise<void> {
    await this.consume(
      this.loginPerSource,
      source,
      'login',
      'too many login attempts from this address; retry later',
    );
  }

  private async consume(
    limiter: RateLimiterMemory,
    key: string,
    limit: string,
    message: string,
  ): Promise<void> {
    try {
      await limiter.consume(key);
    } catch (refusal) {
      if (!(refusal instanceof RateLimiterRes)) throw refusal;
      throw new RateLimited(limit, Math.max(1, Math.ceil(refusal.msBeforeNext / 1000)), message);
    }
  }
}
