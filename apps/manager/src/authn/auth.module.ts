import { Global, Module } from '@nestjs/common';
import { AclModule } from '../acl/acl.module';
import { SessionsModule } from '../sessions/sessions.module';
import { TokensModule } from '../tokens/tokens.module';
import { UsersModule } from '../users/users.module';
import { PasswordHasherRepository } from '../users/password-hasher.repository';
import { AccessPolicy } from '../authz/access-policy.service';
import { CallerCache } from '../authz/caller-cache';
import { AuthRepository } from './auth.repository';
import { AuthService } from './auth.service';
import { ApiTokenStrategy } from './strategies/api-token.strategy';
import { CallerAuthenticator } from './strategies/caller-authenticator';
import { SessionCookieStrategy } from './strategies/session-cookie.strategy';
import { RateLimiterService } from '../authz/rate-limiter.service';

/** Authentication (tokens, sessions), authorization and rate limits: used by the global guard and every feature. */
@Global()
@Module({
  imports: [AclModule, TokensModule, UsersModule, SessionsModule],
  providers: [
    AccessPolicy,
    CallerCache,
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
    CallerCache,
    AuthService,
    RateLimiterService,
    PasswordHasherRepository,
  ],
})
export class AuthModule {}
