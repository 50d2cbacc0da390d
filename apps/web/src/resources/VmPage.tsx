import type { SignedIn } from '../auth/queries';

// PLACEHOLDER: being written now (issue 6); replaced before this lands.
export function VmPage({ signedIn, remote, vmid }: { signedIn: SignedIn; remote: string; vmid: string }) {
  void signedIn;
  return <main><h1>VmPage</h1></main>;
}
