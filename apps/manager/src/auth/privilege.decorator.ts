import { PRIVILEGES, type Privilege, type PrivilegeRequirement } from '@debvisor/permissions';
import { applyDecorators, SetMetadata } from '@nestjs/common';
import { ApiBearerAuth, ApiExtension, ApiForbiddenResponse, ApiUnauthorizedResponse } from '@nestjs/swagger';

export const PRIVILEGE_METADATA = 'debvisor:privilege';
export const PUBLIC_METADATA = 'debvisor:public';

/** What a route declares: a privilege on an ACL path template. */
export interface RouteRequirement extends PrivilegeRequirement {
  /**
   * For collections: the caller needs the privilege on the path or anywhere below it; the service
   * then filters the answer to what the caller may see.
   */
  readonly partial: boolean;
}

/**
 * The privilege a route needs, on an ACL path whose `{name}` parts come from the route parameters:
 * `@RequirePrivilege('remote.modify', '/remotes/{remote}')`. The global guard enforces it and the
 * OpenAPI document shows it as `x-debvisor-privilege`.
 */
export function RequirePrivilege(privilege: Privilege, path = '/', options: { partial?: boolean } = {}): MethodDecorator & ClassDecorator {
  const requirement: RouteRequirement = { privilege, path, partial: options.partial ?? false };
  return applyDecorators(
    SetMetadata(PRIVILEGE_METADATA, requirement),
    ApiBearerAuth(),
    ApiExtension('x-debvisor-privilege', {
      privilege,
      path,
      partial: requirement.partial,
      description: PRIVILEGES[privilege],
    }),
    ApiUnauthorizedResponse({ description: 'No valid API token' }),
    ApiForbiddenResponse({ description: `Needs ${privilege} on ${path}${requirement.partial ? ' (or below it)' : ''}` }),
  );
}

/** A route anyone may call without a token (health, readiness, metrics). */
export function Public(): MethodDecorator & ClassDecorator {
  return applyDecorators(SetMetadata(PUBLIC_METADATA, true), ApiExtension('x-debvisor-privilege', { public: true }));
}
