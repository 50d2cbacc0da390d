import type { SignedIn } from '../auth/queries';

// PLACEHOLDER: being written now (issue 6); replaced before this lands.
export function TaskPage({ signedIn, id }: { signedIn: SignedIn; id: string }) {
  void signedIn;
  return <main><h1>TaskPage</h1></main>;
}
