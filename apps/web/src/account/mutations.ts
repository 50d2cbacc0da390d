import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api, unwrap } from '../api/client';
import { useSignedOut } from '../auth/mutations';
import { webauthnAttestation, type CreationOptionsJson } from '../auth/webauthn';
import { accountKeys } from './queries';

export type FactorKind = 'totp' | 'webauthn';

/** POST /access/tfa/webauthn answers this. */
export interface RegisteredSecurityKey {
  id: string;
  name: string;
  /** With the first second factor: 10 recovery codes, shown only now. */
  recoveryCodes: string[] | null;
  stage: 'setup' | 'active';
}

/** Reloads the list of second factors after a change. */
function useReloadFactors() {
  const queryClient = useQueryClient();
  return () => queryClient.invalidateQueries({ queryKey: accountKeys.tfa() });
}

/** POST /access/password: the manager checks the current password and its policy, and ends the other sessions. */
export function useChangePassword() {
  return useMutation({
    mutationFn: (input: { currentPassword: string; newPassword: string }) =>
      unwrap(api.POST('/api/v1/access/password', { body: input })),
  });
}

/** Options (with a fresh password check) → the browser creates the credential → the manager stores it. */
export function useAddSecurityKey() {
  const reload = useReloadFactors();
  return useMutation({
    mutationFn: async (input: { name: string; password: string }) => {
      const options = (await unwrap(
        api.POST('/api/v1/access/tfa/webauthn/options', { body: input }),
      )) as CreationOptionsJson;
      return unwrap(
        api.POST('/api/v1/access/tfa/webauthn', {
          body: { response: await webauthnAttestation(options) },
        }),
      );
    },
    onSettled: reload,
  });
}

/** Removes an authenticator app or a security key (the password is a fresh check). */
export function useRemoveFactor() {
  const reload = useReloadFactors();
  return useMutation({
    mutationFn: (input: { kind: FactorKind; id: string; password: string }) =>
      input.kind === 'totp'
        ? unwrap(
            api.DELETE('/api/v1/access/tfa/totp/{id}', {
              params: { path: { id: input.id } },
              body: { password: input.password },
            }),
          )
        : unwrap(
            api.DELETE('/api/v1/access/tfa/webauthn/{id}', {
              params: { path: { id: input.id } },
              body: { password: input.password },
            }),
          ),
    onSettled: reload,
  });
}

/** Ten new recovery codes, shown once; the previous ones stop working. */
export function useNewRecoveryCodes() {
  const reload = useReloadFactors();
  return useMutation({
    mutationFn: (password: string) =>
      unwrap(api.POST('/api/v1/access/tfa/recovery', { body: { password } })),
    onSettled: reload,
  });
}

/** Ends every session of the user, this one included: back to the login page. */
export function useLogoutEverywhere() {
  const signedOut = useSignedOut();
  return useMutation({
    mutationFn: () => unwrap(api.POST('/api/v1/auth/logout-everywhere')),
    onSuccess: signedOut,
  });
}

/** After an authenticator app was added through the shared enrolment. */
export function useFactorsChanged() {
  return useReloadFactors();
}
