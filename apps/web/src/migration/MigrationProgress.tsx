import { isActive, type Task } from '../tasks/task-view';
import { Timestamp } from '../ui/Timestamp';
import { PHASES, progressFigures } from './migration-progress';
import './migration.css';

/**
 * A migration task's phase, figures and phase journal: the wizard's live view and the task page's
 * migration section. `data-testid="migration-progress"` only while the task is queued or running.
 */
export function MigrationProgress({ task }: { task: Task }) {
  const figures = progressFigures(task);
  const details = task.migration;
  if (!figures || !details) return null;
  const active = isActive(task.state);
  const reached = PHASES.findIndex((p) => p.phase === details.phase);
  const finalPhase = reached < 0;
  return (
    <div
      className="migration-progress"
      data-testid={active ? 'migration-progress' : 'migration-figures'}
    >
      <p className="route">
        <strong>{details.source.remote}</strong>
        {details.source.node ? ` / ${details.source.node}` : ''} →{' '}
        <strong>{details.target.remote}</strong> / {details.target.node}
        <span className="muted">
          {' '}
          ({details.options.online ? 'live' : 'offline'}, {details.options.mode},{' '}
          {details.options.transport})
        </span>
      </p>
      <ol className="phases" aria-label="Migration phases">
        {PHASES.map((p, index) => {
          const state =
            finalPhase || index < reached ? 'done' : index === reached ? 'current' : 'todo';
          return (
            <li
              key={p.phase}
              className={`phase-${state}`}
              aria-current={state === 'current' ? 'step' : undefined}
            >
              {p.label}
            </li>
          );
        })}
        <li
          className={finalPhase ? `phase-end phase-${details.phase}` : 'phase-todo'}
          aria-current={finalPhase ? 'step' : undefined}
        >
          {finalPhase ? figures.phaseLabel : 'Done'}
        </li>
      </ol>
      <p aria-live="polite">
        Phase: <strong data-testid="migration-phase">{figures.phaseLabel}</strong>
        {figures.stage && !finalPhase ? (
          <span className="muted"> (source: {figures.stage})</span>
        ) : null}
      </p>
      <div className="bar">
        <progress max={100} value={figures.percent} aria-label="Memory sent" />
        <span data-testid="migration-percent">{figures.percent} %</span>
      </div>
      <dl className="figures">
        <div>
          <dt>Transferred</dt>
          <dd data-testid="migration-transferred">{figures.transferred}</dd>
        </div>
        <div>
          <dt>Remaining</dt>
          <dd data-testid="migration-remaining">{figures.remaining}</dd>
        </div>
        <div>
          <dt>Total memory</dt>
          <dd data-testid="migration-total">{figures.total}</dd>
        </div>
        <div>
          <dt>Dirty rate</dt>
          <dd data-testid="migration-dirty-rate">{figures.dirtyRate}</dd>
        </div>
        <div>
          <dt>Expected downtime</dt>
          <dd data-testid="migration-expected-downtime">{figures.expectedDowntime}</dd>
        </div>
        <div>
          <dt>ETA</dt>
          <dd data-testid="migration-eta">{figures.eta}</dd>
        </div>
        <div>
          <dt>Pass</dt>
          <dd data-testid="migration-iteration">{figures.iteration}</dd>
        </div>
        {figures.downtime ? (
          <div>
            <dt>Downtime</dt>
            <dd data-testid="migration-downtime">{figures.downtime}</dd>
          </div>
        ) : null}
        {figures.totalTime ? (
          <div>
            <dt>Total time</dt>
            <dd data-testid="migration-total-time">{figures.totalTime}</dd>
          </div>
        ) : null}
      </dl>
      <h3>Journal</h3>
      {details.journal.length === 0 ? (
        <p className="muted">No steps yet.</p>
      ) : (
        <ol className="journal" data-testid="migration-journal">
          {details.journal.map((entry, index) => (
            <li key={`${entry.at}-${index}`}>
              <Timestamp at={entry.at} />
              <span className={`badge phase-badge phase-badge-${entry.phase}`}>{entry.phase}</span>
              <span className="message">{entry.message}</span>
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}
