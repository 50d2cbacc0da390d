import { lazy, Suspense, useEffect, useState } from 'react';
import { AccountPage } from './account/AccountPage';
import { AdminPage } from './admin/AdminPage';
import { errorMessage } from './api/client';
import { AuditPage } from './audit/AuditPage';
import { CertificatesPage } from './certificates/CertificatesPage';
import { LoginPage } from './auth/LoginPage';
import { useLogout, useSignedOut } from './auth/mutations';
import { may } from './auth/permissions';
import { useSignedIn, type SignedIn } from './auth/queries';
import { TfaSetup } from './auth/TfaSetup';
import { DashboardPage } from './dashboard/DashboardPage';
import { HaPage } from './ha/HaPage';
import { MigrationWizard } from './migration/MigrationWizard';
import { ReplicationPage } from './replication/ReplicationPage';
import { ResourcesPage } from './resources/ResourcesPage';
import { VmPage } from './resources/VmPage';
import { TaskPage } from './tasks/TaskPage';
import { TasksPage } from './tasks/TasksPage';
import { UNAUTHORIZED_EVENT } from './unauthorized';
import { href, useRoute, type Route } from './view';

/** How the page was reached: `/?login=tfa` or `/?login=setup` after a single sign-on whose second factor follows. */
export type Arrival = 'tfa' | 'setup' | null;

/** The console page with noVNC, loaded when first opened (noVNC is a large part of the bundle). */
const ConsolePage = lazy(() =>
  import('./console/ConsolePage').then((module) => ({ default: module.ConsolePage })),
);

/** The navigation's sections; a section the user may not read is not shown (the manager would refuse it). */
function sections(signedIn: SignedIn): { label: string; route: Route; pages: Route['page'][] }[] {
  return [
    { label: 'Dashboard', route: { page: 'dashboard' }, pages: ['dashboard'] },
    {
      label: 'Resources',
      route: { page: 'resources', q: '' },
      pages: ['resources', 'vm', 'migrate', 'console'],
    },
    { label: 'Replication', route: { page: 'replication' }, pages: ['replication'] },
    { label: 'HA', route: { page: 'ha' }, pages: ['ha'] },
    { label: 'Tasks', route: { page: 'tasks' }, pages: ['tasks', 'task'] },
    ...(may(signedIn, 'audit.read')
      ? [
          {
            label: 'Audit log',
            route: { page: 'audit' } as Route,
            pages: ['audit'] as Route['page'][],
          },
        ]
      : []),
    ...(may(signedIn, 'remote.audit') || may(signedIn, 'access.audit')
      ? [
          {
            label: 'Administration',
            route: { page: 'admin', section: 'remotes' } as Route,
            pages: ['admin'] as Route['page'][],
          },
        ]
      : []),
    ...(may(signedIn, 'system.audit')
      ? [
          {
            label: 'Certificates',
            route: { page: 'certificates' } as Route,
            pages: ['certificates'] as Route['page'][],
          },
        ]
      : []),
    { label: 'Account', route: { page: 'account' }, pages: ['account'] },
  ];
}

function AppBar({ signedIn, route }: { signedIn: SignedIn; route: Route }) {
  const logout = useLogout();
  return (
    <header className="appbar">
      <a className="skip-link" href="#content">
        Skip to content
      </a>
      <span className="product">DebVisor Datacenter Manager</span>
      <nav aria-label="Pages" className="pages">
        {sections(signedIn).map((section) => (
          <a
            key={section.label}
            href={href(section.route)}
            aria-current={section.pages.includes(route.page) ? 'page' : undefined}
          >
            {section.label}
          </a>
        ))}
      </nav>
      <span className="who">
        Signed in as <strong data-testid="signed-in-user">{signedIn.user}</strong>
      </span>
      <button type="button" onClick={() => logout.mutate()} disabled={logout.isPending}>
        Log out
      </button>
      {logout.isError && (
        <span role="alert" className="error">
          {errorMessage(logout.error)}
        </span>
      )}
    </header>
  );
}

function Content({ signedIn, route }: { signedIn: SignedIn; route: Route }) {
  switch (route.page) {
    case 'dashboard':
      return <DashboardPage signedIn={signedIn} />;
    case 'resources':
      return <ResourcesPage signedIn={signedIn} q={route.q} />;
    case 'vm':
      return <VmPage signedIn={signedIn} remote={route.remote} vmid={route.vmid} />;
    case 'migrate':
      return <MigrationWizard signedIn={signedIn} remote={route.remote} vmid={route.vmid} />;
    case 'console':
      return (
        <Suspense fallback={<p className="loading">Loading…</p>}>
          <ConsolePage signedIn={signedIn} remote={route.remote} vmid={route.vmid} />
        </Suspense>
      );
    case 'tasks':
      return <TasksPage />;
    case 'task':
      return <TaskPage signedIn={signedIn} id={route.id} />;
    case 'replication':
      return <ReplicationPage signedIn={signedIn} />;
    case 'ha':
      return <HaPage signedIn={signedIn} />;
    case 'audit':
      return <AuditPage signedIn={signedIn} />;
    case 'admin':
      return <AdminPage signedIn={signedIn} section={route.section} />;
    case 'certificates':
      return <CertificatesPage signedIn={signedIn} />;
    case 'account':
      return <AccountPage signedIn={signedIn} />;
  }
}

/**
 * Start-up asks the manager whether a session exists (GET /auth/session): signed in → the pages;
 * a second factor to enrol → its setup; otherwise the login page. A credential that stops working
 * (session ended, token revoked) brings the login page back with the reason.
 */
export function App({ arrival = null }: { arrival?: Arrival }) {
  const signedIn = useSignedIn();
  const signedOut = useSignedOut();
  const logout = useLogout();
  const route = useRoute();
  const [notice, setNotice] = useState<string | null>(() =>
    arrival === 'tfa'
      ? 'Your single sign-on login needs a second factor, and this page could not resume it: please sign in again.'
      : null,
  );

  // A notice explains one return to the login page; once signed in again, it is done.
  useEffect(() => {
    if (signedIn.data) setNotice(null);
  }, [signedIn.data]);

  useEffect(() => {
    const follow = (event: Event) => {
      setNotice(`Signed out: ${(event as CustomEvent<string>).detail}`);
      signedOut();
    };
    window.addEventListener(UNAUTHORIZED_EVENT, follow);
    return () => window.removeEventListener(UNAUTHORIZED_EVENT, follow);
  }, [signedOut]);

  if (signedIn.isPending) return <p className="loading">Loading…</p>;
  if (signedIn.isError) {
    return (
      <main className="narrow">
        <h1>DebVisor Datacenter Manager</h1>
        <p role="alert" className="error">
          {errorMessage(signedIn.error)}
        </p>
        <button type="button" onClick={() => void signedIn.refetch()}>
          Try again
        </button>
      </main>
    );
  }
  const current = signedIn.data;
  if (!current) return <LoginPage notice={notice} />;
  if (current.stage === 'tfa')
    return (
      <LoginPage
        notice={notice}
        resume={{ user: current.user, methods: [...(current.methods ?? ['totp', 'recovery'])] }}
      />
    );
  if (current.stage === 'setup')
    return (
      <TfaSetup
        user={current.user}
        askPassword={arrival !== 'setup'}
        onLogOut={() => logout.mutate()}
      />
    );
  return (
    <>
      <AppBar signedIn={current} route={route} />
      <div id="content" tabIndex={-1}>
        <Content signedIn={current} route={route} />
      </div>
    </>
  );
}
