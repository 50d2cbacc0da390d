import type { Schemas } from '../api/client';

/**
 * The forms of users, groups, memberships, remote groups and API tokens: what was typed → request
 * bodies, and the problems the manager would answer, said before sending.
 */

const USERNAME = /^[A-Za-z0-9._@+-]+$/;
const USER_ID = /^[A-Za-z0-9._@+-]+@[a-z][a-z0-9-]{0,31}$/;
const GROUP_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const REMOTE_GROUP_ID = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const isUserId = (value: string) => USER_ID.test(value);
export const isGroupId = (value: string) => GROUP_ID.test(value);

// --- users ------------------------------------------------------------------------------------------

export interface UserForm {
  username: string;
  realm: string;
  password: string;
  repeat: string;
  displayName: string;
  email: string;
  requireTfa: boolean;
  enabled: boolean;
}

export function userFormProblems(form: UserForm): string[] {
  const problems: string[] = [];
  const username = form.username.trim();
  if (!username || username.length > 200 || !USERNAME.test(username) || username.startsWith('-')) {
    problems.push('a user name is letters, digits and . _ @ + - (not starting with -)');
  }
  if (form.realm === 'local' && form.password !== form.repeat)
    problems.push('the password and its repetition differ');
  if (form.realm !== 'local' && form.password)
    problems.push(
      'only local users get a password here; directory users log in with their directory password',
    );
  const email = form.email.trim();
  if (email && !/^[^\s@]+@[^\s@]+$/.test(email)) problems.push('not a valid e-mail address');
  return problems;
}

/** POST /api/v1/access/users: empty optional fields are left out (the manager's defaults apply). */
export function createUserBody(form: UserForm): Schemas['CreateUserDto'] {
  return {
    username: form.username.trim(),
    realm: form.realm,
    ...(form.realm === 'local' && form.password ? { password: form.password } : {}),
    ...(form.displayName.trim() ? { displayName: form.displayName.trim() } : {}),
    ...(form.email.trim() ? { email: form.email.trim() } : {}),
    enabled: form.enabled,
    requireTfa: form.requireTfa,
  };
}

// --- groups and memberships ------------------------------------------------------------------------

export interface GroupForm {
  id: string;
  comment: string;
  tenant: boolean;
  requireTfa: boolean;
}

export function groupFormProblems(form: GroupForm): string[] {
  return isGroupId(form.id.trim())
    ? []
    : ['a group id is 1-128 letters, digits or . _ -, starting with a letter or digit'];
}

export function createGroupBody(form: GroupForm): Schemas['CreateGroupDto'] {
  return {
    id: form.id.trim(),
    comment: form.comment.trim(),
    tenant: form.tenant,
    requireTfa: form.requireTfa,
  };
}

type Member = { user: string; source: string };

/** The members an administrator added (`source: local`): the only ones PUT …/members replaces. */
export function localMembers(members: readonly Member[]): string[] {
  return members.filter((m) => m.source === 'local').map((m) => m.user);
}

/** The local members after adding or removing one user; null when that changes nothing. */
export function membersAfter(
  local: readonly string[],
  user: string,
  member: boolean,
): string[] | null {
  const has = local.includes(user);
  if (has === member) return null;
  return member ? [...local, user] : local.filter((u) => u !== user);
}

/** Which groups a user joins and leaves to go from its local memberships to the wanted ones. */
export function membershipChanges(
  current: readonly string[],
  wanted: readonly string[],
): { join: string[]; leave: string[] } {
  return {
    join: wanted.filter((g) => !current.includes(g)),
    leave: current.filter((g) => !wanted.includes(g)),
  };
}

// --- remote groups --------------------------------------------------------------------------------

export interface RemoteGroupForm {
  id: string;
  comment: string;
  entries: { remote: string; credential: string }[];
}

export function remoteGroupProblems(form: RemoteGroupForm, creating: boolean): string[] {
  const problems: string[] = [];
  if (creating && !REMOTE_GROUP_ID.test(form.id.trim()))
    problems.push('a remote group id is 1-63 lower-case letters, digits and inner hyphens');
  if (form.entries.some((e) => !e.remote || !e.credential))
    problems.push('every entry needs a remote and one of its credentials');
  const remotes = form.entries.map((e) => e.remote);
  if (new Set(remotes).size !== remotes.length)
    problems.push('each remote may appear once in a remote group');
  return problems;
}

export function createRemoteGroupBody(form: RemoteGroupForm): Schemas['CreateRemoteGroupDto'] {
  return {
    id: form.id.trim(),
    comment: form.comment.trim(),
    entries: form.entries.map((e) => ({ remote: e.remote, credential: e.credential })),
  };
}

export function updateRemoteGroupBody(form: RemoteGroupForm): Schemas['UpdateRemoteGroupDto'] {
  return {
    comment: form.comment.trim(),
    entries: form.entries.map((e) => ({ remote: e.remote, credential: e.credential })),
  };
}

// --- API tokens ------------------------------------------------------------------------------------

export interface TokenForm {
  /** `me`: a token of the signed-in user (POST …/tokens/mine); else an administrator's token for a user or a group. */
  ownerType: 'me' | 'user' | 'group';
  owner: string;
  name: string;
  comment: string;
  /** yyyy-mm-dd from a date input: the token works until the end of that day (local time); empty: no expiry. */
  expires: string;
  limited: boolean;
}

/** The end of a yyyy-mm-dd day in local time, as an ISO time; null when the text is not such a date. */
export function endOfDay(date: string): string | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  if (!match) return null;
  const end = new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]), 23, 59, 59);
  if (end.getMonth() !== Number(match[2]) - 1) return null;
  return end.toISOString();
}

export function tokenFormProblems(form: TokenForm, now: Date): string[] {
  const problems: string[] = [];
  const owner = form.owner.trim();
  if (form.ownerType === 'user' && !isUserId(owner))
    problems.push('the owner is a user id: name@realm, e.g. alice@local');
  if (form.ownerType === 'group' && !isGroupId(owner)) problems.push('the owner is a group id');
  if (!TOKEN_NAME.test(form.name.trim()))
    problems.push('a token name is 1-64 letters, digits or . _ -');
  if (form.expires) {
    const end = endOfDay(form.expires);
    if (!end) problems.push('the expiry is a date');
    else if (Date.parse(end) <= now.getTime()) problems.push('the expiry must be in the future');
  }
  return problems;
}

/** The route and body that create the token. */
export function createTokenRequest(
  form: TokenForm,
):
  | { mine: true; body: Schemas['CreateOwnTokenDto'] }
  | { mine: false; body: Schemas['CreateTokenDto'] } {
  const expiresAt = form.expires ? endOfDay(form.expires) : null;
  const fields = {
    name: form.name.trim(),
    comment: form.comment.trim(),
    limited: form.limited,
    ...(expiresAt ? { expiresAt } : {}),
  };
  if (form.ownerType === 'me') return { mine: true, body: fields };
  return { mine: false, body: { ownerType: form.ownerType, owner: form.owner.trim(), ...fields } };
}

/** A token's state in words: revoked, expired, or active. */
export function tokenState(
  token: { revokedAt: string | null; expiresAt: string | null },
  now: Date,
): 'revoked' | 'expired' | 'active' {
  if (token.revokedAt) return 'revoked';
  if (token.expiresAt && Date.parse(token.expiresAt) <= now.getTime()) return 'expired';
  return 'active';
}
