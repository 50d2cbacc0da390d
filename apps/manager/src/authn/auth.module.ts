import { Global, Module } from '@nestjs/common';
import { PasswordHasherRepository } from '../users/password-hasher.repository';
import { AccessPolicy } from '../authz/access-policy.service';
import { AuthRepository } from './auth.repository';
import { AuthService } from './auth.service';
import { RateLimiterService } from '../authz/rate-limiter.service';

/** Authentication (tokens, sessions), authorization and rate limits: used by the global guard and every feature. */
@Global()
@Module({
  providers: [
    AccessPolicy,
    AuthService,
    AuthRepository,
    RateLimiterService,
    PasswordHasherRepository,
  ],
  exports: [AccessPolicy, AuthService, RateLimiterService, PasswordHasherRepository],
})
export class AuthModule {}
