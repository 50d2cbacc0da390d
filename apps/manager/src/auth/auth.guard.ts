import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { AuthService } from './auth.service';
import { CALLER_KEY } from './caller';
import { PRIVILEGE_METADATA, PUBLIC_METADATA, type RouteRequirement } from './privilege.decorator';

/**
 * Global guard: public routes pass; every other route needs a valid API token and the privilege the
 * route declares. A route that declares neither is refused (fail closed) — and the route walk test
 * catches it before it ships.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly auth: AuthService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_METADATA, targets)) return true;
    const requirement = this.reflector.getAllAndOverride<RouteRequirement | undefined>(PRIVILEGE_METADATA, targets);
    const http = context.switchToHttp();
    const request = http.getRequest<Request>();
    try {
      const caller = await this.auth.authenticate(request.headers.authorization);
      (request as unknown as Record<string, unknown>)[CALLER_KEY] = caller;
      if (!requirement) throw new DomainError(ErrorCode.Forbidden, 'this route declares no privilege and is closed');
      this.auth.authorize(caller, requirement, request.params as Record<string, string | undefined>);
      return true;
    } catch (error) {
      if (error instanceof DomainError && error.code === ErrorCode.Unauthenticated) {
        http.getResponse<Response>().setHeader('WWW-Authenticate', 'Bearer realm="debvisor"');
      }
      throw error;
    }
  }
}
