import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { resolveAclPath } from '@debvisor/permissions';
import type { Request, Response } from 'express';
import { AuditService } from '../audit/audit.service';
import { requestOrigin } from '../audit/request-origin';
import { DomainError, PermissionDenied } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MetricsService } from '../health/metrics.service';
import { presentedTokenId } from '../tokens/api-token';
import { AccessPolicy } from '../authz/access-policy.service';
import { CallerAuthenticator } from './strategies/caller-authenticator';
import { CALLER_KEY } from '../authz/caller';
import {
  PRIVILEGE_METADATA,
  PUBLIC_METADATA,
  SECOND_FACTOR_PENDING_METADATA,
  SELF_SERVICE_METADATA,
  TFA_SETUP_METADATA,
  type RouteRequirement,
} from '../authz/privilege.decorator';
import { RateLimiterService } from '../authz/rate-limiter.service';
import { SESSION_COOKIE, cookieValue } from '../sessions/session-secrets';

/**
 * Global guard: public routes pass; every other route needs an API token or a login session (with
 * the CSRF token for writes) — checked by the passport strategy that the request's credentials
 * call for (CallerAuthenticator) — must be within the rate limits, and needs the privilege the route
 * declares. A route that declares none is refused (fail closed) — and the route walk test catches
 * it before it ships. Token authentications go to the audit log (logins are recorded at login);
 * denials and rate-limit hits are recorded by the error filter.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly authenticator: CallerAuthenticator,
    private readonly policy: AccessPolicy,
    private readonly limits: RateLimiterService,
    private readonly metrics: MetricsService,
    private readonly audit: AuditService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_METADATA, targets)) return true;
    const requirement = this.reflector.getAllAndOverride<RouteRequirement | undefined>(
      PRIVILEGE_METADATA,
      targets,
    );
    const http = context.switchToHttp();
    const request = http.getRequest<Request>();
    const origin = requestOrigin(request);
    const strategy = this.authenticator.strategyFor(request);
    const method = strategy.method;
    let caller;
    try {
      caller = await this.authenticator.authenticate(
        strategy,
        request,
        http.getResponse<Response>(),
      );
    } catch (error) {
      const sessionPresented =
        method === 'session' && cookieValue(request.headers.cookie, SESSION_COOKIE) !== undefined;
      if (error instanceof DomainError && error.code === ErrorCode.Unauthenticated) {
        this.metrics.rpc.authAttempt(method, 'failure');
        if (method === 'token') {
          await this.audit.authentication(
            {
              outcome: 'failure',
              method: 'api_token',
              tokenId: presentedTokenId(request.headers.authorization),
              reason: error.message,
            },
            origin,
          );
        } else if (sessionPresented) {
          await this.audit.authentication(
            { outcome: 'failure', method: 'session', reason: error.message },
            origin,
          );
        }
        http.getResponse<Response>().setHeader('WWW-Authenticate', 'Bearer realm="debvisor"');
        // Guessing tokens or replaying dead cookies counts like failed logins from that address.
        if (method === 'token' || sessionPresented)
          await this.limits.loginAttempt(origin.source ?? 'unknown');
      }
      throw error;
    }
    this.metrics.rpc.authAttempt(method, 'success');
    if (caller.kind === 'token') {
      await this.audit.authentication(
        {
          outcome: 'success',
          method: 'api_token',
          principal: caller.principal,
          tokenId: caller.tokenId,
        },
        origin,
      );
    }
    (request as unknown as Record<string, unknown>)[CALLER_KEY] = caller;
    // Keyed on the principal (not the token), and an administrator of the whole manager stays
    // answerable whoever floods it.
    await this.limits.request(
      `${caller.principalType}:${caller.principal}`,
      this.policy.holds(caller, 'system.modify', '/'),
    );
    if (
      caller.sessionStage === 'tfa' &&
      !this.reflector.getAllAndOverride<boolean>(SECOND_FACTOR_PENDING_METADATA, targets)
    ) {
      throw new DomainError(
        ErrorCode.Unauthenticated,
        'this login waits for its second factor: POST /api/v1/auth/tfa first',
      );
    }
    if (
      caller.sessionStage === 'setup' &&
      !this.reflector.getAllAndOverride<boolean>(TFA_SETUP_METADATA, targets)
    ) {
      throw new PermissionDenied(
        undefined,
        {},
        'your account must log in with a second factor: enrol one first (POST /api/v1/access/tfa/totp or POST /api/v1/access/tfa/webauthn/options); this session continues once it is confirmed',
      );
    }
    if (this.reflector.getAllAndOverride<boolean>(SELF_SERVICE_METADATA, targets)) {
      if (caller.kind !== 'session')
        throw new PermissionDenied(
          undefined,
          {},
          'this route acts on your own account and needs a login session, not an API token',
        );
      return true;
    }
    if (!requirement)
      throw new PermissionDenied(undefined, {}, 'this route declares no privilege and is closed');
    const params = request.params as Record<string, string | undefined>;
    try {
      this.policy.authorize(caller, requirement, params);
    } catch (error) {
      // A VM the caller may not even see answers as if it did not exist (tenant isolation).
      if (
        error instanceof PermissionDenied &&
        requirement.path.includes('{vmid}') &&
        !this.policy.holds(caller, 'vm.audit', resolveAclPath(requirement.path, params))
      ) {
        throw new PermissionDenied(requirement, params, error.message, 'virtual machine');
      }
      throw error;
    }
    return true;
  }
}
