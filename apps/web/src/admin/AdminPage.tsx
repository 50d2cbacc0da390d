import type { Privilege } from '@debvisor/permissions';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { href, type AdminSection } from '../view';
import './admin.css';
import { AclSection } from './AclSection';
import { GroupsSection } from './GroupsSection';
import { NotReadable } from './parts';
import { RealmsSection } from './RealmsSection';
import { RemoteGroupsSection } from './RemoteGroupsSection';
import { RemotesSection } from './RemotesSection';
import { TokensSection } from './TokensSection';
import { UsersSection } from './UsersSection';

/** The tabs, each with the privilege (on /) that reading it takes. */
const TABS: readonly { section: AdminSection; label: string; reads: Privilege }[] = [
  { section: 'remotes', label: 'Remotes', reads: 'remote.audit' },
  { section: 'remote-groups', label: 'Remote groups', reads: 'remote.audit' },
  { section: 'users', label: 'Users', reads: 'access.audit' },
  { section: 'groups', label: 'Groups', reads: 'access.audit' },
  { section: 'realms', label: 'Realms', reads: 'access.audit' },
  { section: 'acl', label: 'ACL', reads: 'access.audit' },
  { section: 'tokens', label: 'API tokens', reads: 'access.audit' },
];

function Section({ signedIn, section }: { signedIn: SignedIn; section: AdminSection }) {
  switch (section) {
    case 'remotes':
      return <RemotesSection signedIn={signedIn} />;
    case 'remote-groups':
      return <RemoteGroupsSection signedIn={signedIn} />;
    case 'users':
      return <UsersSection signedIn={signedIn} />;
    case 'groups':
      return <GroupsSection signedIn={signedIn} />;
    case 'realms':
      return <RealmsSection signedIn={signedIn} />;
    case 'acl':
      return <AclSection signedIn={signedIn} />;
    case 'tokens':
      return <TokensSection signedIn={signedIn} />;
  }
}

/**
 * Administration: remotes, remote groups, users, groups, realms, the ACL and API tokens. Every
 * section is readable with the audit privilege; each change is an ActionButton that needs
 * remote.modify or access.modify (the manager enforces them again).
 */
export function AdminPage({ signedIn, section }: { signedIn: SignedIn; section: AdminSection }) {
  const tab = TABS.find((t) => t.section === section) ?? TABS[0];
  return (
    <main className="admin">
      <h1>Administration</h1>
      <nav className="tabs" aria-label="Administration sections">
        {TABS.map((t) => (
          <a
            key={t.section}
            href={href({ page: 'admin', section: t.section })}
            aria-current={t.section === tab.section ? 'page' : undefined}
          >
            {t.label}
          </a>
        ))}
      </nav>
      {may(signedIn, tab.reads) ? (
        <Section key={tab.section} signedIn={signedIn} section={tab.section} />
      ) : (
        <NotReadable privilege={tab.reads} />
      )}
    </main>
  );
}
