import { useId } from 'react';
import { ErrorNote } from '../ui/ErrorNote';
import { href } from '../view';
import './ha.css';
import { haTotals } from './ha-view';
import { useHaOverview } from './queries';

/**
 * The dashboard's High availability box: HA VMs protected, recovering, fenced and in error over
 * every remote the user sees, fenced nodes, and what needs attention, with a link to the HA page.
 */
export function HaSummary() {
  const overview = useHaOverview();
  const headingId = useId();
  if (!overview.data) return <ErrorNote error={overview.error} />;
  const totals = haTotals(overview.data);
  const alerts = overview.data.remotes.flatMap((remote) =>
    remote.alerts.map((alert) => ({ ...alert, remote: remote.remote })),
  );
  return (
    <section aria-labelledby={headingId} className="dash-panel ha-summary" data-testid="ha-summary">
      <h2 id={headingId}>High availability</h2>
      <dl>
        <div>
          <dt>Protected VMs</dt>
          <dd data-testid="ha-protected">{totals.protected}</dd>
        </div>
        <div>
          <dt>Recovering</dt>
          <dd>{totals.recovering}</dd>
        </div>
        <div>
          <dt>Fenced VMs</dt>
          <dd>{totals.fenced}</dd>
        </div>
        <div>
          <dt>VMs in error</dt>
          <dd className={totals.error > 0 ? 'error' : undefined}>{totals.error}</dd>
        </div>
        <div>
          <dt>Fenced nodes</dt>
          <dd
            className={totals.fencedNodes > 0 ? 'error' : undefined}
            data-testid="ha-fenced-nodes"
          >
            {totals.fencedNodes}
          </dd>
        </div>
      </dl>
      {alerts.length > 0 && (
        <ul aria-label="HA alerts">
          {alerts.map((alert) => (
            <li
              key={`${alert.remote}:${alert.message}`}
              className={alert.severity === 'critical' ? 'error' : undefined}
            >
              <span aria-hidden="true">{alert.severity === 'critical' ? '✖' : '▲'}</span>{' '}
              <span className="visually-hidden">{alert.severity}: </span>
              {alert.remote}: {alert.message}
            </li>
          ))}
        </ul>
      )}
      <p>
        <a href={href({ page: 'ha' })}>High availability of every remote</a>
      </p>
    </section>
  );
}
