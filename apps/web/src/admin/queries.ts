import { useQuery } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';

/**
 * GET answers are typed by hand: the manager documents them as `default` responses, which the
 * typed client does not count as success (its data type is `never`).
 */

/** What the Administration page reads: remotes and their status, remote groups, users, groups, realms, the ACL and tokens. */

export type Remote = Schemas['RemoteDto_Output'];
export type RemoteStatus = Schemas['RemoteStatus_Output'];
export type RemoteGroup = Schemas['RemoteGroupDto_Output'];
export type User = Schemas['UserDto_Output'];
export type GroupSummary = Schemas['GroupListDto_Output']['items'][number];
export type Group = Schemas['GroupDto_Output'];
export type Realm = Schemas['RealmDto_Output'];
export type AclEntry = Schemas['AclEntryDto_Output'];
export type Token = Schemas['TokenDto_Output'];

export const adminKeys = {
  all: ['admin'] as const,
  remotes: () => [...adminKeys.all, 'remotes'] as const,
  remoteStatuses: () => [...adminKeys.all, 'remote-statuses'] as const,
  remoteGroups: () => [...adminKeys.all, 'remote-groups'] as const,
  users: () => [...adminKeys.all, 'users'] as const,
  groups: () => [...adminKeys.all, 'groups'] as const,
  group: (id: string) => [...adminKeys.groups(), 'detail', id] as const,
  realms: () => [...adminKeys.all, 'realms'] as const,
  acl: () => [...adminKeys.all, 'acl'] as const,
  tokens: () => [...adminKeys.all, 'tokens'] as const,
  myTokens: () => [...adminKeys.tokens(), 'mine'] as const,
};

/** The remotes the caller may see, with endpoints, trust and credential names (never a key). */
export function useRemotes(enabled = true) {
  return useQuery({
    queryKey: adminKeys.remotes(),
    queryFn: async () => (await unwrap(api.GET('/api/v1/remotes'))).items,
    enabled,
  });
}

/**
 * Each remote's status (online, unreachable, pending) and the caller's privileges on it, from the
 * resource cache: one resource is enough, the statuses come with every answer.
 */
export function useRemoteStatuses(enabled = true) {
  return useQuery({
    queryKey: adminKeys.remoteStatuses(),
    queryFn: async () =>
      (await unwrap(api.GET('/api/v1/resources', { params: { query: { limit: 1 } } }))).remotes,
    enabled,
    refetchInterval: 30_000,
  });
}

export function useRemoteGroups(enabled = true) {
  return useQuery({
    queryKey: adminKeys.remoteGroups(),
    queryFn: async () => (await unwrap(api.GET('/api/v1/remote-groups'))).items,
    enabled,
  });
}

export function useUsers(enabled = true) {
  return useQuery({
    queryKey: adminKeys.users(),
    queryFn: async () => (await unwrap(api.GET('/api/v1/access/users'))).items,
    enabled,
  });
}

export function useGroups(enabled = true) {
  return useQuery({
    queryKey: adminKeys.groups(),
    queryFn: async () => (await unwrap(api.GET('/api/v1/access/groups'))).items,
    enabled,
  });
}

/** One group with its members and where each membership comes from. */
export function useGroup(id: string | null) {
  return useQuery({
    queryKey: adminKeys.group(id ?? ''),
    queryFn: () =>
      unwrap(api.GET('/api/v1/access/groups/{group}', { params: { path: { group: id! } } })),
    enabled: id !== null,
  });
}

export function useRealms(enabled = true) {
  return useQuery({
    queryKey: adminKeys.realms(),
    queryFn: async () => (await unwrap(api.GET('/api/v1/access/realms'))).items,
    enabled,
  });
}

export function useAclEntries(enabled = true) {
  return useQuery({
    queryKey: adminKeys.acl(),
    queryFn: async () => (await unwrap(api.GET('/api/v1/access/acl'))).items,
    enabled,
  });
}

/** Every token of every user and group (administrators' view; never a secret). */
export function useTokens(enabled = true) {
  return useQuery({
    queryKey: adminKeys.tokens(),
    queryFn: async () => (await unwrap(api.GET('/api/v1/access/tokens'))).items,
    enabled,
  });
}

/** The signed-in user's own tokens (login sessions only: the manager refuses API tokens here). */
export function useMyTokens(enabled = true) {
  return useQuery({
    queryKey: adminKeys.myTokens(),
    queryFn: async () => (await unwrap(api.GET('/api/v1/access/tokens/mine'))).items,
    enabled,
  });
}
