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
 * The manager's rate limits, counted in this process: API requests per principal and for the whole
 * manager, and password / second-factor attempts per source address.
 */
@Injectable()
export class RateLimiterService {
  private readonly perPrincipal: RateLimiterMemory;
  private readonly global: RateLimiterMemory;
  private readonly loginPerSource: RateLimiterMemory;

  constructor(@Inject(MANAGER_CONFIG) config: ManagerConfig) {
    this.perPrincipal = new RateLimiterMemory({
      keyPrefix: 'principal',
      points: config.access.rateLimitPerPrincipal,
      duration: 60,
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

  /** One API request of `principal`; throws RateLimited when it or the manager as a whole is over its limit. */
  async request(principal: string): Promise<void> {
    await this.consume(
      this.global,
      'all',
      'global',
      'the manager is answering too many requests; retry later',
    );
    await this.consume(
      this.perPrincipal,
      principal,
      'principal',
      'too many requests from this principal; retry later',
    );
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
