import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { AccessView } from './grants';

/**
 * Who made a request — a user through a login session, or an API token of a user or a group — and
 * what it may do (its access view).
 */
export interface Caller extends AccessView {
  readonly kind: 'session' | 'token';
  /** The user id (`alice@local`), or the group id for a group's token. */
  readonly principal: string;
  readonly principalType: 'user' | 'group';
  /** The manager groups the user belongs to (for a group token: that group). */
  readonly groups: readonly string[];
  readonly tokenId: string | null;
  readonly tokenName: string | null;
  /** The session id (SHA-256 of the cookie secret) of a session caller. */
  readonly sessionId: string | null;
  /** How tasks and logs name the caller: `alice@local`, `alice@local!ci`, `@ops!deploy`. */
  readonly display: string;
}

/** How far a session got: `tfa` waits for the second factor, `setup` may only enrol one. */
export type SessionStage = 'tfa' | 'setup' | 'active';

/** A caller as authentication answers it. */
export interface AuthenticatedCaller extends Caller {
  /** For a session: its stage (`setup` sessions may only enrol a second factor). */
  readonly sessionStage: SessionStage | null;
}

export const CALLER_KEY = 'debvisorCaller';

/** The caller of the current request, set by the auth guard. */
export const CurrentCaller = createParamDecorator(
  (_: unknown, context: ExecutionContext): Caller => {
    const request = context.switchToHttp().getRequest<Record<string, unknown>>();
    const caller = request[CALLER_KEY] as Caller | undefined;
    if (!caller) throw new Error('CurrentCaller used on a route without authentication');
    return caller;
  },
);

/**
 * The principal behind a caller's display (what tasks record as their owner and schedules as
 * theirs): `alice@local!ci` → `alice@local`, `@ops!deploy` → `@ops`, `alice@local` as it is. The
 * one parser of task owners; tokenDisplay is its inverse.
 */
export function ownerPrincipal(owner: string): string {
  const bang = owner.indexOf('!');
  return bang > 0 ? owner.slice(0, bang) : owner;
}

/** How a token is named: `alice@local!ci` for a user's, `@ops!deploy` for a group's. */
export function tokenDisplay(ownerType: 'user' | 'group', owner: string, name: string): string {
  return `${ownerType === 'group' ? '@' : ''}${owner}!${name}`;
}
