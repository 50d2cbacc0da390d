import { useId, useState } from 'react';
import { ErrorNote } from '../ui/ErrorNote';
import { href } from '../view';
import { useResourceTree, type NodeResource } from './queries';
import { valueOf, withScope } from './search-terms';

/**
 * Remotes and their nodes as nested lists: a remote's button opens its nodes (aria-expanded), and
 * every name is a link that narrows the search to it (remote:X, remote:X node:Y), keeping the
 * other terms. Links, so that the keyboard, the back button and "open in new tab" all work.
 */
export function ResourceTree({ q }: { q: string }) {
  const tree = useResourceTree();
  const headingId = useId();
  const [toggled, setToggled] = useState<Record<string, boolean>>({});
  const inScope = { remote: valueOf(q, 'remote'), node: valueOf(q, 'node') };
  const nodesOf = new Map<string, NodeResource[]>();
  for (const node of tree.data?.nodes ?? [])
    nodesOf.set(node.remote, [...(nodesOf.get(node.remote) ?? []), node]);
  const remotes = [...(tree.data?.remotes ?? [])].sort((a, b) => a.remote.localeCompare(b.remote));
  const allVms = remotes.reduce((sum, r) => sum + r.vms.total, 0);
  return (
    <nav aria-labelledby={headingId} className="tree">
      <h2 id={headingId}>Remotes and nodes</h2>
      <ErrorNote error={tree.error} />
      {tree.isPending && !tree.error && <p className="muted">Loading…</p>}
      {tree.data && (
        <ul className="tree-root">
          <li>
            <span className="tree-twisty-space" aria-hidden="true" />
            <a
              href={href({ page: 'resources', q: '' })}
              aria-current={q === '' ? 'page' : undefined}
            >
              All remotes
            </a>
            <span className="tree-count" title="VMs">
              {allVms}
            </span>
          </li>
          {remotes.map((remote) => {
            const nodes = nodesOf.get(remote.remote) ?? [];
            const expanded = toggled[remote.remote] ?? inScope.remote === remote.remote;
            const listId = `${headingId}-${remote.remote}`;
            const current = inScope.remote === remote.remote && inScope.node === null;
            return (
              <li key={remote.remote}>
                <button
                  type="button"
                  className="tree-twisty"
                  aria-expanded={expanded}
                  aria-controls={listId}
                  aria-label={`Nodes of ${remote.remote}`}
                  onClick={() => setToggled((was) => ({ ...was, [remote.remote]: !expanded }))}
                >
                  <span aria-hidden="true">{expanded ? '▾' : '▸'}</span>
                </button>
                <a
                  href={href({ page: 'resources', q: withScope(q, { remote: remote.remote }) })}
                  aria-current={current ? 'page' : undefined}
                >
                  {remote.remote}
                </a>
                {remote.status !== 'online' && (
                  <span className={`tree-status tree-status-${remote.status}`}>
                    <span aria-hidden="true">{remote.status === 'unreachable' ? '✖' : '…'}</span>{' '}
                    {remote.status}
                  </span>
                )}
                <span className="tree-count" title="VMs running / VMs">
                  {remote.vms.running}/{remote.vms.total}
                </span>
                <ul id={listId} hidden={!expanded}>
                  {nodes.length === 0 && <li className="muted">No nodes known.</li>}
                  {nodes.map((node) => (
                    <li key={node.id}>
                      <a
                        href={href({
                          page: 'resources',
                          q: withScope(q, { remote: remote.remote, node: node.id }),
                        })}
                        aria-current={
                          inScope.remote === remote.remote && inScope.node === node.id
                            ? 'page'
                            : undefined
                        }
                        title={node.fqdn || undefined}
                      >
                        {node.id}
                      </a>
                      {node.name !== node.id && <span className="muted"> ({node.name})</span>}
                      {node.state === 'decommissioned' ? (
                        <span className="tree-status">decommissioned</span>
                      ) : node.state === 'unreachable' || node.state === 'down' ? (
                        <span
                          className="tree-status tree-status-unreachable"
                          title={node.lastSeenAt ? `last seen ${node.lastSeenAt}` : undefined}
                        >
                          <span aria-hidden="true">✖</span>{' '}
                          {node.state === 'down' ? 'down' : 'unreachable'}
                        </span>
                      ) : (
                        node.status !== 'ok' && (
                          <span className="tree-status tree-status-degraded">
                            <span aria-hidden="true">▲</span> {node.status}
                          </span>
                        )
                      )}
                      <span className="tree-count" title="VMs running / VMs on this node">
                        {node.vmsRunning}/{node.vmCount}
                      </span>
                    </li>
                  ))}
                </ul>
              </li>
            );
          })}
        </ul>
      )}
    </nav>
  );
}
