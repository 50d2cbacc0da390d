import type { SignedIn } from '../auth/queries';

// PLACEHOLDER: being written now (issue 6); replaced before this lands.
export function TasksPage({ signedIn }: { signedIn: SignedIn }) {
  void signedIn;
  return <main><h1>TasksPage</h1></main>;
}
