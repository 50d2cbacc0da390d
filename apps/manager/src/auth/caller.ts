import type { Role } from '@debvisor/permissions';
import { createParamDecorator, type ExecutionContext } from '@nestjs/common';

/** Who made a request: the authenticated token, its principal and the ACL entries granted to it. */
export interface Caller {
  readonly principal: string;
  readonly tokenId: string;
  readonly tokenName: string;
  /** `principal!tokenName`: how tasks and logs name the caller. */
  readonly display: string;
  readonly acl: readonly { readonly path: string; readonly role: Role }[];
}

export const CALLER_KEY = 'debvisorCaller';

/** The caller of the current request, set by the auth guard. */
export const CurrentCaller = createParamDecorator((_: unknown, context: ExecutionContext): Caller => {
  const request = context.switchToHttp().getRequest<Record<string, unknown>>();
  const caller = request[CALLER_KEY] as Caller | undefined;
  if (!caller) throw new Error('CurrentCaller used on a route without authentication');
  return caller;
});
