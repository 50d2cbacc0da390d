import { ROLES, type Role } from '@debvisor/permissions';
import type { Schemas } from '../api/client';
import { isGroupId, isUserId } from './access-forms';

/** The ACL editor's logic: path suggestions, the checks the manager makes, and the request bodies. */

export type PrincipalType = 'user' | 'group' | 'token';
export const PRINCIPAL_TYPES: readonly PrincipalType[] = ['user', 'group', 'token'];
export { ROLES };

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const TOKEN_ID = /^[0-9a-f]{16}$/;

const PATH_FORMS =
  '/, /remotes, /remotes/{remote}, /remotes/{remote}/vms, /remotes/{remote}/vms/{vm uuid}, /groups, /groups/{remote group}, /access, /system';

/** The paths worth offering: the fixed ones and one per known remote and remote group. */
export function aclPathSuggestions(
  remotes: readonly string[],
  remoteGroups: readonly string[],
): string[] {
  return [
    '/',
    '/remotes',
    ...[...remotes].sort().map((r) => `/remotes/${r}`),
    '/groups',
    ...[...remoteGroups].sort().map((g) => `/groups/${g}`),
    '/access',
    '/system',
  ];
}

/** What is wrong with an ACL path (the forms the manager accepts), or null. */
export function aclPathProblem(path: string): string | null {
  if (path === '/') return null;
  const bad = `not an ACL path: use one of ${PATH_FORMS}`;
  if (!path.startsWith('/') || path.endsWith('/')) return bad;
  const parts = path.slice(1).split('/');
  const [root, id, sub, vm] = parts;
  switch (root) {
    case 'access':
    case 'system':
      return parts.length === 1 ? null : bad;
    case 'groups':
      if (parts.length === 1) return null;
      return parts.length === 2 && LABEL.test(id) ? null : bad;
    case 'remotes':
      if (parts.length === 1) return null;
      if (parts.length > 4 || !LABEL.test(id)) return bad;
      if (parts.length === 2) return null;
      if (sub !== 'vms') return bad;
      return parts.length === 3 || UUID.test(vm) ? null : `${vm} is not a VM uuid`;
    default:
      return bad;
  }
}

/** What a principal must look like for its type, or null when it does. */
export function principalProblem(type: PrincipalType, principal: string): string | null {
  switch (type) {
    case 'user':
      return isUserId(principal) ? null : 'a user is name@realm, e.g. alice@local';
    case 'group':
      return isGroupId(principal) ? null : 'a group is its id, e.g. debvisor-operator';
    case 'token':
      return TOKEN_ID.test(principal) ? null : 'a token is its id: the 16 hex digits after dvdm_';
  }
}

export interface AclForm {
  path: string;
  principalType: PrincipalType;
  principal: string;
  role: Role;
  propagate: boolean;
}

export function aclFormProblems(form: AclForm): string[] {
  return [
    aclPathProblem(form.path.trim()),
    principalProblem(form.principalType, form.principal.trim()),
  ].filter((p): p is string => p !== null);
}

/** PUT /api/v1/access/acl. */
export function putAclBody(form: AclForm): Schemas['PutAclDto'] {
  return {
    path: form.path.trim(),
    principalType: form.principalType,
    principal: form.principal.trim(),
    role: form.role,
    propagate: form.propagate,
  };
}

/** The key of an entry: what DELETE /api/v1/access/acl takes. */
export function aclKey(entry: { path: string; principalType: PrincipalType; principal: string }): {
  path: string;
  principalType: PrincipalType;
  principal: string;
} {
  return { path: entry.path, principalType: entry.principalType, principal: entry.principal };
}

/** Entries in a stable order: by path, then principal type and name. */
export function sortAclEntries<
  T extends { path: string; principalType: string; principal: string },
>(entries: readonly T[]): T[] {
  return [...entries].sort(
    (a, b) =>
      a.path.localeCompare(b.path) ||
      a.principalType.localeCompare(b.principalType) ||
      a.principal.localeCompare(b.principal),
  );
}
