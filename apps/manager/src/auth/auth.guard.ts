import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { AuditService } from '../audit/audit.service';
import { requestOrigin } from '../audit/request-origin';
import { DomainError, PermissionDenied } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MetricsService } from '../health/metrics.service';
import { presentedTokenId } from './api-token';
import { AuthService } from './auth.service';
import { CALLER_KEY, type Caller } from './caller';
import { PRIVILEGE_METADATA, PUBLIC_METADATA, type RouteRequirement } from './privilege.decorator';

/**
 * Global guard: public routes pass; every other route needs a valid API token and the privilege the
 * route declares. A route that declares neither is refused (fail closed) — and the route walk test
 * catches it before it ships. Authentication attempts go to the audit log; denials are recorded by
 * the error filter, like those decided in services.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly auth: AuthService,
    private readonly metrics: MetricsService,
    private readonly audit: AuditService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_METADATA, targets)) return true;
    const requirement = this.reflector.getAllAndOverride<RouteRequirement | undefined>(PRIVILEGE_METADATA, targets);
    const http = context.switchToHttp();
    const request = http.getRequest<Request>();
    const origin = requestOrigin(request);
    try {
      const caller: Caller = await this.auth.authenticate(request.headers.authorization);
      this.metrics.rpc.authAttempt('token', 'success');
      await this.audit.authentication({ outcome: 'success', method: 'api_token', principal: caller.principal, tokenId: caller.tokenId }, origin);
      (request as unknown as Record<string, unknown>)[CALLER_KEY] = caller;
      if (!requirement) throw new PermissionDenied(undefined, {}, 'this route declares no privilege and is closed');
      this.auth.authorize(caller, requirement, request.params as Record<string, string | undefined>);
      return true;
    } catch (error) {
      if (error instanceof DomainError && error.code === ErrorCode.Unauthenticated) {
        this.metrics.rpc.authAttempt('token', 'failure');
        const tokenId = presentedTokenId(request.headers.authorization);
        await this.audit.authentication({ outcome: 'failure', method: 'api_token', tokenId, reason: error.message }, origin);
        http.getResponse<Response>().setHeader('WWW-Authenticate', 'Bearer realm="debvisor"');
      }
      throw error;
    }
  }
}
