import type { SignedIn } from '../auth/queries';
import type { AdminSection } from '../view';

// PLACEHOLDER: being written now (issue 6); replaced before this lands.
export function AdminPage({ signedIn, section }: { signedIn: SignedIn; section: AdminSection }) {
  void signedIn;
  return <main><h1>AdminPage</h1></main>;
}
