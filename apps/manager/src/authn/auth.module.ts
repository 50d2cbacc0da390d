import { Global, Module } from '@nestjs/common';
import { PasswordHasherRepository } from '../users/password-hasher.repository';
import { AccessPolicy } from '../authz/access-policy.service';
import { AuthRepository } from './auth.repository';
import { AuthService } from './auth.service';
import { ApiTokenStrategy } from './strategies/api-token.strategy';
import { CallerAuthenticator } from './strategies/caller-authenticator';
import { SessionCookieStrategy } from './strategies/session-cookie.strategy';
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
    ApiTokenStrategy,
    SessionCookieStrategy,
    CallerAuthenticator,
  ],
  exports: [
    CallerAuthenticator,
    AccessPolicy,
    AuthService,
    RateLimiterService,
    PasswordHasherRepository,
  ],
})
export class AuthModule {}
