import { applyDecorators, SetMetadata } from '@nestjs/common';
import { ApiExtension } from '@nestjs/swagger';
import { AUDIT_ACTIONS, type AuditAction } from './audit-actions';

export const AUDITED_METADATA = 'debvisor:audited';

export interface AuditedRoute {
  readonly action: AuditAction;
  /**
   * The target recorded, a path whose `{name}` parts come from the route parameters and
   * `{body.name}` parts from the request body (as sent); by default the route's ACL path.
   */
  readonly target?: string;
}

/**
 * A route that changes something: the audit interceptor records an `attempt` entry before the
 * handler runs (the request is refused with 503 when that fails) and the outcome after it. Every
 * route other than GET must carry it (a test walks the routes); the OpenAPI document shows it as
 * `x-debvisor-audit`.
 */
export function Audited(action: AuditAction, options: { target?: string } = {}): MethodDecorator {
  const route: AuditedRoute = { action, target: options.target };
  return applyDecorators(
    SetMetadata(AUDITED_METADATA, route),
    ApiExtension('x-debvisor-audit', { action, description: AUDIT_ACTIONS[action] }),
  );
}
