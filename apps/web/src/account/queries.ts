import { useQuery } from '@tanstack/react-query';
import { api, unwrap } from '../api/client';

/** GET /access/tfa: the signed-in user's second factors. */
export interface TfaOverview {
  /** Authenticator apps (TOTP); unconfirmed ones do not count for logins. */
  devices: { id: string; name: string; confirmed: boolean; createdAt: string }[];
  /** Security keys and platform authenticators. */
  webauthn: { id: string; name: string; createdAt: string; lastUsedAt: string | null }[];
  recoveryCodesLeft: number;
  totpLocked: boolean;
  lockedUntil: string | null;
}

export const accountKeys = {
  all: ['account'] as const,
  tfa: () => [...accountKeys.all, 'tfa'] as const,
};

/** The second factors of the signed-in user (login sessions only). */
export function useTfaOverview(enabled = true) {
  return useQuery({
    queryKey: accountKeys.tfa(),
    queryFn: (): Promise<TfaOverview> => unwrap(api.GET('/api/v1/access/tfa')),
    enabled,
  });
}
