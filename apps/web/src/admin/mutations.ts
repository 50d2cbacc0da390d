import { useMutation, useQueryClient, type QueryKey } from '@tanstack/react-query';
import { api, errorMessage, unwrap, type Schemas } from '../api/client';
import { localMembers, membersAfter } from './access-forms';
import type { PrincipalType } from './acl-forms';
import { adminKeys } from './queries';
import type { ProbeOutcome } from './remote-forms';

/** The Administration page's changes; each reloads what it changed. */

function useReload() {
  const queryClient = useQueryClient();
  return (...keys: QueryKey[]) =>
    Promise.all(keys.map((queryKey) => queryClient.invalidateQueries({ queryKey })));
}

// --- remotes ---------------------------------------------------------------------------------------

/** The connection test: the certificate chain each endpoint presents (each endpoint on its own; one failing does not stop the others). */
export function useProbeEndpoints() {
  return useMutation({
    mutationFn: (endpoints: string[]): Promise<ProbeOutcome[]> =>
      Promise.all(
        endpoints.map(async (endpoint): Promise<ProbeOutcome> => {
          try {
            const answer = await unwrap(api.POST('/api/v1/remotes/probe', { body: { endpoint } }));
            return { endpoint, certificates: answer.certificates };
          } catch (error) {
            return { endpoint, error: errorMessage(error) };
          }
        }),
      ),
  });
}

/** Adds a remote; the manager tests it first (TLS, every credential, the node count) and answers what the cluster said. */
export function useCreateRemote() {
  const reload = useReload();
  return useMutation({
    mutationFn: (body: Schemas['CreateRemoteDto']) => unwrap(api.POST('/api/v1/remotes', { body })),
    onSuccess: () => reload(adminKeys.remotes(), adminKeys.remoteStatuses()),
  });
}

export function useUpdateRemote() {
  const reload = useReload();
  return useMutation({
    mutationFn: ({ remote, body }: { remote: string; body: Schemas['UpdateRemoteDto'] }) =>
      unwrap(api.PATCH('/api/v1/remotes/{remote}', { params: { path: { remote } }, body })),
    onSuccess: () => reload(adminKeys.remotes(), adminKeys.remoteStatuses()),
  });
}

/** Removes a remote (its remote-group entries go with it). */
export function useDeleteRemote() {
  const reload = useReload();
  return useMutation({
    mutationFn: (remote: string) =>
      unwrap(api.DELETE('/api/v1/remotes/{remote}', { params: { path: { remote } } })),
    onSuccess: () =>
      reload(adminKeys.remotes(), adminKeys.remoteStatuses(), adminKeys.remoteGroups()),
  });
}

/** A remote cluster's CA rotation, the whole of it (begin, wait for the nodes, finish) as a task. */
export function useRotateRemoteCa() {
  const reload = useReload();
  return useMutation({
    mutationFn: (remote: string) =>
      unwrap(
        api.POST('/api/v1/remotes/{remote}/ca-rotation', {
          params: { path: { remote } },
          body: { action: 'rotate', force: false },
        }),
      ),
    onSuccess: () => reload(adminKeys.remotes()),
  });
}

export function useAddCredential() {
  const reload = useReload();
  return useMutation({
    mutationFn: ({ remote, body }: { remote: string; body: Schemas['AddCredentialDto'] }) =>
      unwrap(
        api.POST('/api/v1/remotes/{remote}/credentials', { params: { path: { remote } }, body }),
      ),
    onSuccess: () => reload(adminKeys.remotes()),
  });
}

export function useRemoveCredential() {
  const reload = useReload();
  return useMutation({
    mutationFn: ({ remote, name }: { remote: string; name: string }) =>
      unwrap(
        api.DELETE('/api/v1/remotes/{remote}/credentials/{name}', {
          params: { path: { remote, name } },
        }),
      ),
    onSuccess: () => reload(adminKeys.remotes(), adminKeys.remoteGroups()),
  });
}

// --- remote groups --------------------------------------------------------------------------------

export function useCreateRemoteGroup() {
  const reload = useReload();
  return useMutation({
    mutationFn: (body: Schemas['CreateRemoteGroupDto']) =>
      unwrap(api.POST('/api/v1/remote-groups', { body })),
    onSuccess: () => reload(adminKeys.remoteGroups()),
  });
}

export function useUpdateRemoteGroup() {
  const reload = useReload();
  return useMutation({
    mutationFn: ({ group, body }: { group: string; body: Schemas['UpdateRemoteGroupDto'] }) =>
      unwrap(api.PUT('/api/v1/remote-groups/{group}', { params: { path: { group } }, body })),
    onSuccess: () => reload(adminKeys.remoteGroups()),
  });
}

export function useDeleteRemoteGroup() {
  const reload = useReload();
  return useMutation({
    mutationFn: (group: string) =>
      unwrap(api.DELETE('/api/v1/remote-groups/{group}', { params: { path: { group } } })),
    onSuccess: () => reload(adminKeys.remoteGroups(), adminKeys.acl()),
  });
}

// --- users -----------------------------------------------------------------------------------------

export function useCreateUser() {
  const reload = useReload();
  return useMutation({
    mutationFn: (body: Schemas['CreateUserDto']) =>
      unwrap(api.POST('/api/v1/access/users', { body })),
    onSuccess: () => reload(adminKeys.users()),
  });
}

/** Enable or disable (disabling ends the user's sessions and stops its tokens), or require a second factor. */
export function useUpdateUser() {
  const reload = useReload();
  return useMutation({
    mutationFn: ({ user, body }: { user: string; body: Schemas['UpdateUserDto'] }) =>
      unwrap(api.PUT('/api/v1/access/users/{user}', { params: { path: { user } }, body })),
    onSuccess: () => reload(adminKeys.users(), adminKeys.tokens()),
  });
}

/** Sets a local user's password: its sessions end and the lock-out resets. */
export function useResetPassword() {
  const reload = useReload();
  return useMutation({
    mutationFn: ({ user, password }: { user: string; password: string }) =>
      unwrap(
        api.POST('/api/v1/access/users/{user}/password', {
          params: { path: { user } },
          body: { password },
        }),
      ),
    onSuccess: () => reload(adminKeys.users()),
  });
}

/** Lifts every lock of a user's login: the password lock-out, the TOTP lock and the second-factor lock. */
export function useUnlockUser() {
  const reload = useReload();
  return useMutation({
    mutationFn: (user: string) =>
      unwrap(api.POST('/api/v1/access/users/{user}/tfa/unlock', { params: { path: { user } } })),
    onSuccess: () => reload(adminKeys.users()),
  });
}

/**
 * A one-time code with which a user who must use a second factor and has none enrols it
 * (DEBVISOR_TFA_ENROLMENT=admin-approval): answered once, to hand over to the user.
 */
export function useIssueEnrolmentCode() {
  return useMutation({
    mutationFn: (user: string) =>
      unwrap(
        api.POST('/api/v1/access/users/{user}/tfa/enrolment-code', {
          params: { path: { user } },
        }),
      ),
  });
}

/** Removes every second factor of a user (a lost phone): the next login enrols again when one is required. */
export function useRemoveSecondFactors() {
  const reload = useReload();
  return useMutation({
    mutationFn: (user: string) =>
      unwrap(api.DELETE('/api/v1/access/users/{user}/tfa', { params: { path: { user } } })),
    onSuccess: () => reload(adminKeys.users()),
  });
}

/** Removes a user with its tokens, sessions, memberships and ACL entries. */
export function useDeleteUser() {
  const reload = useReload();
  return useMutation({
    mutationFn: (user: string) =>
      unwrap(api.DELETE('/api/v1/access/users/{user}', { params: { path: { user } } })),
    onSuccess: () =>
      reload(adminKeys.users(), adminKeys.groups(), adminKeys.acl(), adminKeys.tokens()),
  });
}

/** Adds a user to or removes it from one group's locally managed members (read, change, replace). */
async function setMembership(group: string, user: string, member: boolean): Promise<void> {
  const current = await unwrap(
    api.GET('/api/v1/access/groups/{group}', { params: { path: { group } } }),
  );
  const users = membersAfter(localMembers(current.members), user, member);
  if (users)
    await unwrap(
      api.PUT('/api/v1/access/groups/{group}/members', {
        params: { path: { group } },
        body: { users },
      }),
    );
}

/** A user joins and leaves groups (the groups' local members change; realm-managed memberships stay). */
export function useSetUserGroups() {
  const reload = useReload();
  return useMutation({
    mutationFn: async ({
      user,
      join,
      leave,
    }: {
      user: string;
      join: string[];
      leave: string[];
    }) => {
      for (const group of join) await setMembership(group, user, true);
      for (const group of leave) await setMembership(group, user, false);
    },
    onSettled: () => reload(adminKeys.users(), adminKeys.groups()),
  });
}

// --- groups ----------------------------------------------------------------------------------------

export function useCreateGroup() {
  const reload = useReload();
  return useMutation({
    mutationFn: (body: Schemas['CreateGroupDto']) =>
      unwrap(api.POST('/api/v1/access/groups', { body })),
    onSuccess: () => reload(adminKeys.groups()),
  });
}

export function useUpdateGroup() {
  const reload = useReload();
  return useMutation({
    mutationFn: ({ group, body }: { group: string; body: Schemas['UpdateGroupDto'] }) =>
      unwrap(api.PUT('/api/v1/access/groups/{group}', { params: { path: { group } }, body })),
    onSuccess: () => reload(adminKeys.groups()),
  });
}

/** Adds or removes one locally managed member. */
export function useSetGroupMember() {
  const reload = useReload();
  return useMutation({
    mutationFn: ({ group, user, member }: { group: string; user: string; member: boolean }) =>
      setMembership(group, user, member),
    onSettled: () => reload(adminKeys.groups(), adminKeys.users()),
  });
}

export function useDeleteGroup() {
  const reload = useReload();
  return useMutation({
    mutationFn: (group: string) =>
      unwrap(api.DELETE('/api/v1/access/groups/{group}', { params: { path: { group } } })),
    onSuccess: () =>
      reload(adminKeys.groups(), adminKeys.users(), adminKeys.acl(), adminKeys.tokens()),
  });
}

// --- realms ----------------------------------------------------------------------------------------

/** Adds an LDAP or OpenID Connect realm; an LDAP realm's connection is tested first. */
export function useCreateRealm() {
  const reload = useReload();
  return useMutation({
    mutationFn: (body: Schemas['CreateRealmDto']) =>
      unwrap(api.POST('/api/v1/access/realms', { body })),
    onSuccess: () => reload(adminKeys.realms()),
  });
}

export function useUpdateRealm() {
  const reload = useReload();
  return useMutation({
    mutationFn: ({ realm, body }: { realm: string; body: Schemas['UpdateRealmDto'] }) =>
      unwrap(api.PUT('/api/v1/access/realms/{realm}', { params: { path: { realm } }, body })),
    onSuccess: () => reload(adminKeys.realms()),
  });
}

/** Removes a realm with its users. */
export function useDeleteRealm() {
  const reload = useReload();
  return useMutation({
    mutationFn: (realm: string) =>
      unwrap(api.DELETE('/api/v1/access/realms/{realm}', { params: { path: { realm } } })),
    onSuccess: () =>
      reload(
        adminKeys.realms(),
        adminKeys.users(),
        adminKeys.groups(),
        adminKeys.acl(),
        adminKeys.tokens(),
      ),
  });
}

/** Syncs an LDAP realm's users and groups now; answers what changed. */
export function useSyncRealm() {
  const reload = useReload();
  return useMutation({
    mutationFn: (realm: string) =>
      unwrap(api.POST('/api/v1/access/realms/{realm}/sync', { params: { path: { realm } } })),
    onSettled: () => reload(adminKeys.realms(), adminKeys.users(), adminKeys.groups()),
  });
}

// --- ACL -------------------------------------------------------------------------------------------

export function usePutAclEntry() {
  const reload = useReload();
  return useMutation({
    mutationFn: (body: Schemas['PutAclDto']) => unwrap(api.PUT('/api/v1/access/acl', { body })),
    onSuccess: () => reload(adminKeys.acl()),
  });
}

export function useRevokeAclEntry() {
  const reload = useReload();
  return useMutation({
    mutationFn: (key: { path: string; principalType: PrincipalType; principal: string }) =>
      unwrap(api.DELETE('/api/v1/access/acl', { body: key })),
    onSuccess: () => reload(adminKeys.acl()),
  });
}

// --- API tokens ------------------------------------------------------------------------------------

/** A token of a user or group (administrators), or of the caller (`mine`); the answer holds the secret, once. */
export function useCreateToken() {
  const reload = useReload();
  return useMutation({
    mutationFn: (
      request:
        | { mine: true; body: Schemas['CreateOwnTokenDto'] }
        | { mine: false; body: Schemas['CreateTokenDto'] },
    ) =>
      request.mine
        ? unwrap(api.POST('/api/v1/access/tokens/mine', { body: request.body }))
        : unwrap(api.POST('/api/v1/access/tokens', { body: request.body })),
    onSuccess: () => reload(adminKeys.tokens()),
  });
}

export function useRevokeToken() {
  const reload = useReload();
  return useMutation({
    mutationFn: ({ id, mine }: { id: string; mine: boolean }) =>
      mine
        ? unwrap(api.DELETE('/api/v1/access/tokens/mine/{id}', { params: { path: { id } } }))
        : unwrap(api.DELETE('/api/v1/access/tokens/{id}', { params: { path: { id } } })),
    onSuccess: () => reload(adminKeys.tokens()),
  });
}
