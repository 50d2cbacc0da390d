import { resolveAclPath } from '@debvisor/permissions';
import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { catchError, concatMap, from, map, Observable, throwError } from 'rxjs';
import { CALLER_KEY, type Caller } from '../authz/caller';
import { PRIVILEGE_METADATA, type RouteRequirement } from '../authz/privilege.decorator';
import { currentAuditScope } from './audit-call-context';
import { AUDITED_METADATA, type AuditedRoute } from './audited.decorator';
import { AuditService, type AuditedCall } from './audit.service';
import { requestOrigin } from './request-origin';

/**
 * Around every @Audited route (after the guard, before validation and the handler): records the
 * attempt — and refuses the request with 503 audit_unavailable when that cannot be written, so that
 * nothing changes unaudited — then runs the handler in an audit scope and records its outcome with
 * what the services noted, before the answer goes out.
 */
@Injectable()
export class AuditInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    private readonly audit: AuditService,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const targets = [context.getHandler(), context.getClass()];
    const route = this.reflector.getAllAndOverride<AuditedRoute | undefined>(
      AUDITED_METADATA,
      targets,
    );
    if (!route || context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<Request>();
    const requirement = this.reflector.getAllAndOverride<RouteRequirement | undefined>(
      PRIVILEGE_METADATA,
      targets,
    );
    const caller = (request as unknown as Record<string, Caller | undefined>)[CALLER_KEY];
    const call: AuditedCall = {
      action: route.action,
      principal: caller?.principal ?? null,
      tokenId: caller?.tokenId,
      target: targetOf(route, requirement, request),
      origin: requestOrigin(request),
    };
    let notes: Record<string, unknown> = {};
    let ran = false;
    const handled = new Observable<unknown>((subscriber) =>
      this.audit.runCall(call, () => {
        ran = true;
        notes = currentAuditScope()!.notes;
        return next.handle().subscribe(subscriber);
      }),
    );
    return from(this.audit.attempt(call)).pipe(
      concatMap(() => handled),
      concatMap((value) => from(this.audit.outcome(call, notes)).pipe(map(() => value))),
      catchError((error: unknown) =>
        // When the attempt itself could not be recorded, the handler never ran: there is no outcome.
        ran
          ? from(this.audit.outcome(call, notes, error)).pipe(
              concatMap(() => throwError(() => error)),
            )
          : throwError(() => error),
      ),
    );
  }
}

function targetOf(
  route: AuditedRoute,
  requirement: RouteRequirement | undefined,
  request: Request,
): string | null {
  const template = route.target ?? requirement?.path;
  if (!template) return null;
  const params = request.params as Record<string, string | undefined>;
  const body = (request.body ?? {}) as Record<string, unknown>;
  const filled = template.replace(/\{body\.([A-Za-z]+)\}/g, (_, name: string) => {
    const value = body[name];
    return typeof value === 'string' && value !== '' ? encodeURIComponent(value) : '?';
  });
  try {
    return resolveAclPath(filled, params);
  } catch {
    return filled;
  }
}
