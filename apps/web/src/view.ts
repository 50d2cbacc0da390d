import { useEffect, useState } from 'react';

/**
 * Hash routing: `#/<page>/<part>/<part>?<query>`. Pages and their links live here, so that the
 * rest of the UI never assembles a location by hand.
 */
export type Page =
  | 'dashboard'
  | 'resources'
  | 'vm'
  | 'migrate'
  | 'console'
  | 'tasks'
  | 'task'
  | 'audit'
  | 'admin'
  | 'replication'
  | 'ha'
  | 'certificates'
  | 'account';

export const ADMIN_SECTIONS = [
  'remotes',
  'remote-groups',
  'users',
  'groups',
  'realms',
  'acl',
  'tokens',
] as const;
export type AdminSection = (typeof ADMIN_SECTIONS)[number];

export type Route =
  | { page: 'dashboard' }
  | { page: 'resources'; q: string }
  | { page: 'vm'; remote: string; vmid: string }
  | { page: 'migrate'; remote: string; vmid: string }
  | { page: 'console'; remote: string; vmid: string }
  | { page: 'tasks' }
  | { page: 'task'; id: string }
  | { page: 'audit' }
  | { page: 'admin'; section: AdminSection }
  | { page: 'replication' }
  | { page: 'ha' }
  | { page: 'certificates' }
  | { page: 'account' };

const part = (value: string) => encodeURIComponent(value);

/** The link of a route. */
export function href(route: Route): string {
  switch (route.page) {
    case 'dashboard':
      return '#/';
    case 'resources':
      return route.q
        ? `#/resources?${new URLSearchParams({ q: route.q }).toString()}`
        : '#/resources';
    case 'vm':
      return `#/resources/${part(route.remote)}/${part(route.vmid)}`;
    case 'migrate':
      return `#/migrate/${part(route.remote)}/${part(route.vmid)}`;
    case 'console':
      return `#/console/${part(route.remote)}/${part(route.vmid)}`;
    case 'tasks':
      return '#/tasks';
    case 'task':
      return `#/tasks/${part(route.id)}`;
    case 'audit':
      return '#/audit';
    case 'admin':
      return `#/admin/${route.section}`;
    case 'replication':
      return '#/replication';
    case 'ha':
      return '#/ha';
    case 'certificates':
      return '#/certificates';
    case 'account':
      return '#/account';
  }
}

/** The route of a location hash; anything unknown is the dashboard. */
export function routeFromHash(hash: string): Route {
  const raw = hash.replace(/^#/, '');
  const [path, query = ''] = raw.split('?', 2);
  let parts: string[];
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return { page: 'dashboard' };
  }
  const [first, second, third] = parts;
  switch (first) {
    case 'resources':
      if (parts.length === 3) return { page: 'vm', remote: second, vmid: third };
      return { page: 'resources', q: new URLSearchParams(query).get('q') ?? '' };
    case 'migrate':
      if (parts.length === 3) return { page: 'migrate', remote: second, vmid: third };
      break;
    case 'console':
      if (parts.length === 3) return { page: 'console', remote: second, vmid: third };
      break;
    case 'tasks':
      return parts.length === 2 ? { page: 'task', id: second } : { page: 'tasks' };
    case 'audit':
      return { page: 'audit' };
    case 'admin':
      return {
        page: 'admin',
        section: (ADMIN_SECTIONS as readonly string[]).includes(second)
          ? (second as AdminSection)
          : 'remotes',
      };
    case 'replication':
      return { page: 'replication' };
    case 'ha':
      return { page: 'ha' };
    case 'certificates':
      return { page: 'certificates' };
    case 'account':
      return { page: 'account' };
  }
  return { page: 'dashboard' };
}

/** Goes to a route (a new history entry, so the back button returns). */
export function navigate(route: Route): void {
  window.location.hash = href(route);
}

/** The route of the current location hash, following links and the back button. */
export function useRoute(): Route {
  const [route, setRoute] = useState<Route>(() => routeFromHash(window.location.hash));
  useEffect(() => {
    const follow = () => setRoute(routeFromHash(window.location.hash));
    window.addEventListener('hashchange', follow);
    return () => window.removeEventListener('hashchange', follow);
  }, []);
  return route;
}
