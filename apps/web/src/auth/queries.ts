import { PRIVILEGES, type Privilege } from '@debvisor/permissions';
import { useQuery } from '@tanstack/react-query';
import { api, ApiError, credential, unwrap, type Schemas } from '../api/client';

export type SessionStage = 'active' | 'tfa' | 'setup';
export type TfaMethod = 'totp' | 'recovery' | 'webauthn';

/** GET /auth/session as the manager answers it. */
type CurrentSessionBody = Schemas['CurrentSessionDto_Output'];

/** Who uses the UI, and with what. */
export interface SignedIn {
  via: 'session' | 'token';
  /** `alice@local`; for a token: "API token" (the manager answers /auth/session to login sessions only). */
  user: string;
  /** `tfa`: a login waits for its second factor; `setup`: the account must enrol one first. */
  stage: SessionStage;
  /** The privileges held on `/`; null when unknown (API token): show everything, the server decides. */
  privileges: ReadonlySet<Privilege> | null;
  /** For stage `tfa`: what the second step accepts. */
  methods?: readonly TfaMethod[];
}

export const authKeys = {
  all: ['auth'] as const,
  session: () => [...authKeys.all, 'session'] as const,
  realms: () => [...authKeys.all, 'realms'] as const,
};

const isPrivilege = (p: string): p is Privilege => Object.hasOwn(PRIVILEGES, p);

/** The manager's readable marker beside its HttpOnly session cookie (no secret in it). */
const SIGNED_IN_COOKIE = 'debvisor_signed_in';

function hasSignedInMarker(): boolean {
  return (
    typeof document !== 'undefined' &&
    document.cookie.split(';').some((part) => part.trim().startsWith(`${SIGNED_IN_COOKIE}=`))
  );
}

/** The signed-in state: the API token if one was given, else the session cookie (null: not logged in). */
export async function fetchSignedIn(): Promise<SignedIn | null> {
  if (credential.token())
    return { via: 'token', user: 'API token', stage: 'active', privileges: null };
  // Without the manager's signed-in marker there is no session to ask about (and no 401 to log).
  if (!hasSignedInMarker()) {
    credential.useSession(null);
    return null;
  }
  try {
    const session: CurrentSessionBody = await unwrap(api.GET('/api/v1/auth/session'));
    credential.useSession(session.csrfToken);
    return {
      via: 'session',
      user: session.user,
      stage: session.stage ?? 'active',
      privileges: new Set(session.privileges.filter(isPrivilege)),
      ...(session.stage === 'tfa' ? { methods: session.methods ?? [] } : {}),
    };
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      // The session ended (idle, revoked) while the marker stayed: drop it, so that the next load asks nothing.
      document.cookie = `${SIGNED_IN_COOKIE}=; Max-Age=0; Path=/; Secure; SameSite=Strict`;
      credential.useSession(null);
      return null;
    }
    throw error;
  }
}

/** Asked once at start-up and after every login step; not refetched on its own (a second-factor setup must not be cut short). */
export function useSignedIn() {
  return useQuery({
    queryKey: authKeys.session(),
    queryFn: fetchSignedIn,
    retry: false,
    staleTime: Infinity,
    refetchOnWindowFocus: false,
  });
}

/** Whether the UI offers an action: unknown privileges (API token) show everything; the server still enforces. */
export function holds(signedIn: SignedIn, privilege: Privilege): boolean {
  return signedIn.privileges === null || signedIn.privileges.has(privilege);
}

/** The realms the login page offers (public: asked before anyone is logged in). */
export function useLoginRealms() {
  return useQuery({
    queryKey: authKeys.realms(),
    // GET successes are documented as the OpenAPI `default` answer, which openapi-fetch types as an error: the answer is named here.
    queryFn: async () => {
      const list: Schemas['LoginRealmListDto_Output'] = await unwrap(
        api.GET('/api/v1/auth/realms'),
      );
      return list.items;
    },
    staleTime: 60_000,
    retry: false,
  });
}
