import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { MigrationProgress } from '../migration/MigrationProgress';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { formatDuration, formatPercent } from '../ui/format';
import { LastUpdated } from '../ui/LastUpdated';
import { Timestamp } from '../ui/Timestamp';
import { href } from '../view';
import { useCancelTask } from './mutations';
import { useTask } from './queries';
import {
  currentTargetRoute,
  isActive,
  logBesidesJournal,
  targetLabel,
  taskSeconds,
  type Task,
} from './task-view';
import { TaskStateBadge } from './TaskStateBadge';
import './tasks.css';

/** #/tasks/{id}: a task's facts, progress, error and log (refreshed every second while it runs), and cancel. */
export function TaskPage({ signedIn, id }: { signedIn: SignedIn; id: string }) {
  const task = useTask(id, 1000);
  if (!task.data) {
    return (
      <main className="task">
        <h1>Task</h1>
        {task.isError ? <ErrorNote error={task.error} /> : <p>Loading…</p>}
        <p>
          <a href={href({ page: 'tasks' })}>All tasks</a>
        </p>
      </main>
    );
  }
  return (
    <TaskView
      signedIn={signedIn}
      task={task.data}
      updatedAt={task.dataUpdatedAt}
      fetching={task.isFetching}
      refetch={() => void task.refetch()}
      error={task.error}
    />
  );
}

function TaskView({
  signedIn,
  task,
  updatedAt,
  fetching,
  refetch,
  error,
}: {
  signedIn: SignedIn;
  task: Task;
  updatedAt: number;
  fetching: boolean;
  refetch: () => void;
  error: unknown;
}) {
  const cancel = useCancelTask();
  const [confirming, setConfirming] = useState(false);
  const active = isActive(task.state);
  const target = currentTargetRoute(task);
  const seconds = taskSeconds(task, updatedAt || Date.now());
  const isMigration = task.type === 'vm.migrate';
  // A VM moved by this task to another remote is no longer where the task names it.
  const movedFrom =
    task.vm && task.target.remote && task.vm.remote !== task.target.remote
      ? task.target.remote
      : null;
  const log = logBesidesJournal(task);
  const cancelLabel = isMigration ? 'Cancel migration' : 'Cancel task';
  return (
    <main className="task">
      <div className="toolbar">
        <h1>Task: {task.type}</h1>
        <LastUpdated at={updatedAt} fetching={fetching} onRefresh={refetch} />
      </div>
      <p>
        <a href={href({ page: 'tasks' })}>All tasks</a>
      </p>
      <ErrorNote error={error} />
      <dl className="task-facts">
        <div>
          <dt>State</dt>
          <dd aria-live="polite">
            <TaskStateBadge state={task.state} />
          </dd>
        </div>
        <div className="wide">
          <dt>Target</dt>
          <dd data-testid="task-target" title={task.target.vm ?? undefined}>
            {target ? <a href={href(target)}>{targetLabel(task)}</a> : targetLabel(task)}
            {movedFrom ? <span className="muted"> (moved from {movedFrom})</span> : null}
          </dd>
        </div>
        <div>
          <dt>Owner</dt>
          <dd>{task.owner}</dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>
            <Timestamp at={task.createdAt} />
          </dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>
            <Timestamp at={task.startedAt} />
          </dd>
        </div>
        <div>
          <dt>Finished</dt>
          <dd>
            <Timestamp at={task.finishedAt} />
          </dd>
        </div>
        <div>
          <dt>{active ? 'Running for' : 'Took'}</dt>
          <dd>{formatDuration(seconds)}</dd>
        </div>
        <div>
          <dt>Id</dt>
          <dd>
            <code>{task.id}</code>
          </dd>
        </div>
      </dl>
      {isMigration && task.migration ? null : (
        <div className="task-progress">
          <progress max={1} value={task.progress} aria-label="Progress" />{' '}
          <span>{formatPercent(task.progress)}</span>
        </div>
      )}
      {task.error ? (
        <p className="error task-error" data-testid="task-error">
          {task.error}
        </p>
      ) : null}
      {active ? (
        <div className="actions">
          <ActionButton
            allowed={may(signedIn, 'task.cancel')}
            needs="task.cancel"
            className="danger"
            onClick={() => setConfirming(true)}
            disabled={cancel.isPending}
          >
            {cancelLabel}
          </ActionButton>
          {cancel.isSuccess ? (
            <span className="muted">Cancel requested; the task ends once it has stopped.</span>
          ) : null}
        </div>
      ) : null}
      {confirming && (
        <ConfirmMutation
          mutation={cancel}
          variables={task.id}
          onClose={() => setConfirming(false)}
          title={isMigration ? 'Cancel the migration?' : 'Cancel the task?'}
          confirmLabel={cancelLabel}
          danger
        >
          {isMigration
            ? 'The transfer stops and the VM keeps running where it is now. Once the switchover has begun, a migration can no longer be cancelled.'
            : 'A queued task ends at once; a running one only if its type can stop part-way.'}
        </ConfirmMutation>
      )}
      {isMigration && task.migration ? (
        <section aria-labelledby="task-migration">
          <h2 id="task-migration">Migration</h2>
          <MigrationProgress task={task} />
        </section>
      ) : null}
      <section aria-labelledby="task-log-heading">
        <h2 id="task-log-heading">Log</h2>
        {log.length < task.log.length ? (
          <p className="muted">Without the steps the migration journal above shows.</p>
        ) : null}
        <TaskLog log={log} />
      </section>
    </main>
  );
}

/** The log, oldest first: it follows new lines while the reader is at the bottom, and stays put when they scrolled up. */
function TaskLog({ log }: { log: Task['log'] }) {
  const box = useRef<HTMLOListElement>(null);
  const atBottom = useRef(true);
  useLayoutEffect(() => {
    if (atBottom.current && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [log.length]);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const follow = () => {
      atBottom.current = element.scrollHeight - element.scrollTop - element.clientHeight < 24;
    };
    element.addEventListener('scroll', follow, { passive: true });
    return () => element.removeEventListener('scroll', follow);
  }, []);
  return (
    <ol className="task-log" data-testid="task-log" ref={box} tabIndex={0} aria-label="Task log">
      {log.map((line, index) => (
        <li key={`${line.at}-${index}`}>
          <Timestamp at={line.at} /> <span>{line.message}</span>
        </li>
      ))}
    </ol>
  );
}
