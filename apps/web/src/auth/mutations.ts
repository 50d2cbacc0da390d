import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api, ApiError, credential, unwrap } from '../api/client';
import { authKeys, type SessionStage, type TfaMethod } from './queries';
import { webauthnAssertion } from './webauthn';

/** POST /auth/login and /auth/tfa answer this (the session cookie comes along, HttpOnly). */
export interface LoginAnswer {
  stage: SessionStage;
  user: string;
  csrfToken: string;
  expiresAt: string;
  methods: TfaMethod[];
}

export interface EnrolledTotp {
  id: string;
  uri: string;
  /** A PNG data: URL. */
  qrCode: string;
  secret: string;
}

export interface ConfirmedTotp {
  id: string;
  confirmed: true;
  recoveryCodes?: string[] | null;
  stage?: 'setup' | 'active';
}

/** Asks the manager again who is signed in (after a login step). */
function useReloadSignedIn() {
  const queryClient = useQueryClient();
  return () => queryClient.invalidateQueries({ queryKey: authKeys.session() });
}

/** Forgets the credential and every cached answer: back to the login page. */
export function useSignedOut() {
  const queryClient = useQueryClient();
  return () => {
    credential.clear();
    queryClient.removeQueries({ predicate: (query) => query.queryKey[0] !== authKeys.all[0] });
    queryClient.setQueryData(authKeys.session(), null);
  };
}

/** Username and password. Stage `tfa`: the caller shows the second step; otherwise the session is reloaded. */
export function useLogin() {
  const reload = useReloadSignedIn();
  return useMutation({
    mutationFn: (input: { username: string; password: string; realm?: string }) => {
      credential.clear();
      return unwrap(api.POST('/api/v1/auth/login', { body: input }));
    },
    onSuccess: async (answer) => {
      credential.useSession(answer.csrfToken);
      if (answer.stage !== 'tfa') await reload();
    },
  });
}

/** The second step of a login: a TOTP code or a recovery code, with the CSRF token of the first step. */
export function useSecondFactor() {
  const reload = useReloadSignedIn();
  return useMutation({
    mutationFn: async (answer: { code: string } | { recoveryCode: string } | 'webauthn') =>
      unwrap(
        api.POST('/api/v1/auth/tfa', {
          body: answer === 'webauthn' ? { webauthn: await webauthnAssertion() } : answer,
        }),
      ),
    onSuccess: async (answer) => {
      credential.useSession(answer.csrfToken);
      await reload();
    },
  });
}

/** Signs in with an API token (checked by the first request made with it). */
export function useTokenSignIn() {
  const reload = useReloadSignedIn();
  return (token: string) => {
    credential.useToken(token);
    return reload();
  };
}

/** Ends the session on the manager (an already ended one counts as logged out), or forgets the API token. */
export function useLogout() {
  const signedOut = useSignedOut();
  return useMutation({
    mutationFn: async () => {
      if (credential.token()) return;
      await unwrap(api.POST('/api/v1/auth/logout')).catch((error: unknown) => {
        if (!(error instanceof ApiError && error.status === 401)) throw error;
      });
    },
    onSuccess: signedOut,
  });
}

/** A new, unconfirmed TOTP device of the signed-in user (the password is a fresh check; single sign-on users have none). */
export function useEnrolTotp() {
  return useMutation({
    mutationFn: (input: { name: string; password?: string; enrolmentCode?: string }) =>
      unwrap(api.POST('/api/v1/access/tfa/totp', { body: input })),
  });
}

/** Confirms a device with the code it shows; the first one answers the recovery codes (once) and activates a `setup` session. */
export function useConfirmTotp() {
  return useMutation({
    mutationFn: (input: { id: string; code: string }) =>
      unwrap(
        api.POST('/api/v1/access/tfa/totp/{id}/confirm', {
          params: { path: { id: input.id } },
          body: { code: input.code },
        }),
      ),
  });
}

/** After the setup: the session is active now, ask the manager again. */
export function useSetupDone() {
  return useReloadSignedIn();
}
