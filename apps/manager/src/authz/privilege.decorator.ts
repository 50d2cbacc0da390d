import { PRIVILEGES, type Privilege, type PrivilegeRequirement } from '@debvisor/permissions';
import { applyDecorators, SetMetadata } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiExtension,
  ApiForbiddenResponse,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';

export const PRIVILEGE_METADATA = 'debvisor:privilege';
export const PUBLIC_METADATA = 'debvisor:public';
export const TFA_SETUP_METADATA = 'debvisor:tfa-setup';
export const SELF_SERVICE_METADATA = 'debvisor:self-service';
export const SECOND_FACTOR_PENDING_METADATA = 'debvisor:second-factor-pending';

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
export function RequirePrivilege(
  privilege: Privilege,
  path = '/',
  options: { partial?: boolean } = {},
): MethodDecorator & ClassDecorator {
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
    ApiForbiddenResponse({
      description: `Needs ${privilege} on ${path}${requirement.partial ? ' (or below it)' : ''}`,
    }),
  );
}

/** A route anyone may call without a token (health, readiness, metrics). */
export function Public(): MethodDecorator & ClassDecorator {
  return applyDecorators(
    SetMetadata(PUBLIC_METADATA, true),
    ApiExtension('x-debvisor-privilege', { public: true }),
  );
}

/**
 * A route that a session whose second factor is required but not yet enrolled may call (enrolment,
 * the session itself, logout). It still declares its privilege with RequirePrivilege.
 */
export function AllowDuringTfaSetup(): MethodDecorator & ClassDecorator {
  return SetMetadata(TFA_SETUP_METADATA, true);
}

/**
 * A route on the caller's own account (password, second factors, sessions): any logged-in user may
 * call it for themselves, and only through a login session — API tokens are refused, so that a
 * leaked token cannot take over its owner's account.
 */
export function SelfService(
  options: { duringTfaSetup?: boolean; whileSecondFactorPending?: boolean } = {},
): MethodDecorator & ClassDecorator {
  return applyDecorators(
    SetMetadata(SELF_SERVICE_METADATA, true),
    ...(options.duringTfaSetup ? [SetMetadata(TFA_SETUP_METADATA, true)] : []),
    ...(options.whileSecondFactorPending
      ? [SetMetadata(SECOND_FACTOR_PENDING_METADATA, true)]
      : []),
    ApiExtension('x-debvisor-privilege', {
      self: true,
      description: 'Your own account, through a login session (not an API token)',
    }),
    ApiUnauthorizedResponse({ description: 'Not logged in' }),
  );
}
