import type { SignedIn } from '../auth/queries';

// PLACEHOLDER: being written now (issue 6); replaced before this lands.
export function ResourcesPage({ signedIn, q }: { signedIn: SignedIn; q: string }) {
  void signedIn;
  return <main><h1>ResourcesPage</h1></main>;
}
