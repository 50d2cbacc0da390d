import { useEffect, useState } from 'react';

/** What the signed-in UI shows: the remotes (the start) or the account settings (`#/account`). */
export type View = 'remotes' | 'account';

export const VIEW_HASH: Record<View, string> = { remotes: '#/', account: '#/account' };

/** The view of a location hash; anything unknown is the start. */
export function viewFromHash(hash: string): View {
  return hash.replace(/\/+$/, '') === VIEW_HASH.account ? 'account' : 'remotes';
}

/** The view of the current location hash, following links and the back button. */
export function useView(): View {
  const [view, setView] = useState<View>(() => viewFromHash(window.location.hash));
  useEffect(() => {
    const follow = () => setView(viewFromHash(window.location.hash));
    window.addEventListener('hashchange', follow);
    return () => window.removeEventListener('hashchange', follow);
  }, []);
  return view;
}
