import type { Privilege } from '@debvisor/permissions';
import type { SignedIn } from './queries';

/**
 * Whether the UI offers an action. `granted`: the privileges the manager reported for the object
 * (a remote's or a VM's `privileges`) — exact for sessions and tokens alike. Without them, the
 * privileges held on `/` decide (unknown for an API token: offered, and the server decides).
 */
export function may(
  signedIn: SignedIn,
  privilege: Privilege,
  granted?: readonly string[] | null,
): boolean {
  if (granted) return granted.includes(privilege);
  return signedIn.privileges === null || signedIn.privileges.has(privilege);
}
