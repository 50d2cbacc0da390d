import {
  Injectable,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum';
import type { Request } from 'express';
import type { Observable } from 'rxjs';
import { DomainError } from './domain-error';
import { ErrorCode } from './error-code';

/**
 * A route that declares no `@Body()` takes no body: absent, or an empty JSON object (which some
 * clients send with every POST). Anything else — fields, arrays, deep nesting — is refused with 400
 * before the handler runs, so that no route accepts input that nothing validates. Runs after the
 * guard: a caller without the privilege still gets 401/403 first.
 */
@Injectable()
export class BodylessRouteInterceptor implements NestInterceptor {
  private readonly takesBody = new WeakMap<object, boolean>();

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() === 'http' && !this.routeTakesBody(context)) {
      const body = context.switchToHttp().getRequest<Request>().body as unknown;
      if (!isEmpty(body))
        throw new DomainError(
          ErrorCode.ValidationFailed,
          '(body): this route takes no request body (send none, or {})',
        );
    }
    return next.handle();
  }

  private routeTakesBody(context: ExecutionContext): boolean {
    const handler = context.getHandler();
    let known = this.takesBody.get(handler);
    if (known === undefined) {
      const args =
        (Reflect.getMetadata(ROUTE_ARGS_METADATA, context.getClass(), handler.name) as
          Record<string, unknown> | undefined) ?? {};
      known = Object.keys(args).some((key) => key.split(':')[0] === String(RouteParamtypes.BODY));
      this.takesBody.set(handler, known);
    }
    return known;
  }
}

function isEmpty(body: unknown): boolean {
  if (body === undefined || body === null) return true;
  return (
    typeof body === 'object' &&
    !Array.isArray(body) &&
    Object.getPrototypeOf(body) === Object.prototype &&
    Object.keys(body).length === 0
  );
}
