import { useId, useState, type FormEvent } from 'react';
import { ErrorNote } from '../ui/ErrorNote';
import { formatDuration, formatPercent } from '../ui/format';
import { LastUpdated } from '../ui/LastUpdated';
import { Timestamp } from '../ui/Timestamp';
import { href } from '../view';
import { useTaskList } from './queries';
import { TaskStateBadge } from './TaskStateBadge';
import {
  isUnfiltered,
  NO_TASK_FILTER,
  pageInfo,
  TASK_PAGE_SIZE,
  TASK_STATES,
  TASK_TYPES,
  currentTargetRoute,
  targetLabel,
  taskListQuery,
  taskSeconds,
  type Task,
  type TaskFilter,
  type TaskState,
} from './task-view';
import './tasks.css';

/** How many active tasks the top table shows (queued and running each). */
const ACTIVE_LIMIT = 100;

/** #/tasks: the tasks running now on top (refreshed every 2 s while any runs), the history below, paged on the server. */
export function TasksPage() {
  const running = useTaskList({ state: 'running', limit: ACTIVE_LIMIT, offset: 0 });
  const queued = useTaskList({ state: 'queued', limit: ACTIVE_LIMIT, offset: 0 });
  const [filter, setFilter] = useState<TaskFilter>(NO_TASK_FILTER);
  const [offset, setOffset] = useState(0);
  const history = useTaskList(taskListQuery(filter, offset));
  const active = [...(queued.data?.items ?? []), ...(running.data?.items ?? [])].sort((a, b) =>
    b.createdAt.localeCompare(a.createdAt),
  );
  const activeTotal = (running.data?.total ?? 0) + (queued.data?.total ?? 0);

  const applyFilter = (next: TaskFilter) => {
    setFilter(next);
    setOffset(0);
  };

  return (
    <main className="tasks">
      <div className="toolbar">
        <h1>Tasks</h1>
        <LastUpdated
          at={Math.max(running.dataUpdatedAt, queued.dataUpdatedAt, history.dataUpdatedAt)}
          fetching={running.isFetching || history.isFetching}
          onRefresh={() => {
            void running.refetch();
            void queued.refetch();
            void history.refetch();
          }}
        />
      </div>

      <section aria-labelledby="tasks-running">
        <h2 id="tasks-running">
          Running now <span className="muted">({activeTotal})</span>
        </h2>
        <ErrorNote error={running.error ?? queued.error} />
        {running.isPending || queued.isPending ? (
          <p>Loading…</p>
        ) : active.length === 0 ? (
          <p className="muted">No task is running.</p>
        ) : (
          <TaskTable caption="Tasks running now" tasks={active} showProgress />
        )}
        {activeTotal > active.length ? (
          <p className="muted">
            The {ACTIVE_LIMIT} newest of each state are shown; filter the history to find the
            others.
          </p>
        ) : null}
      </section>

      <section aria-labelledby="tasks-history">
        <h2 id="tasks-history">History</h2>
        <TaskFilterForm filter={filter} onApply={applyFilter} />
        <ErrorNote error={history.error} />
        {history.isPending ? (
          <p>Loading…</p>
        ) : history.data && history.data.items.length > 0 ? (
          <TaskTable caption="Task history, newest first" tasks={history.data.items} />
        ) : (
          <p className="muted">
            {isUnfiltered(filter) ? 'No tasks yet.' : 'No task matches the filter.'}
          </p>
        )}
        {history.data ? (
          <Pager total={history.data.total} offset={offset} onOffset={setOffset} />
        ) : null}
      </section>
    </main>
  );
}

function TaskFilterForm({
  filter,
  onApply,
}: {
  filter: TaskFilter;
  onApply: (filter: TaskFilter) => void;
}) {
  // The remote is typed, so it applies on Enter or "Apply"; the selects apply at once.
  const [remote, setRemote] = useState(filter.remote);
  const id = useId();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onApply({ ...filter, remote });
  };
  return (
    <form className="filters" onSubmit={submit} aria-label="Filter the history">
      <div>
        <label htmlFor={`${id}-state`}>State</label>
        <select
          id={`${id}-state`}
          value={filter.state}
          onChange={(event) =>
            onApply({ ...filter, remote, state: event.target.value as TaskState | '' })
          }
        >
          <option value="">any</option>
          {TASK_STATES.map((state) => (
            <option key={state} value={state}>
              {state}
            </option>
          ))}
        </select>
      </div>
      <div>
        <label htmlFor={`${id}-type`}>Type</label>
        <select
          id={`${id}-type`}
          value={filter.type}
          onChange={(event) => onApply({ ...filter, remote, type: event.target.value })}
        >
          <option value="">any</option>
          {TASK_TYPES.map((type) => (
            <option key={type} value={type}>
              {type}
            </option>
          ))}
        </select>
      </div>
      <div>
        <label htmlFor={`${id}-remote`}>Remote</label>
        <input
          id={`${id}-remote`}
          value={remote}
          onChange={(event) => setRemote(event.target.value)}
          placeholder="e.g. dc-east"
        />
      </div>
      <button type="submit">Apply</button>
      <button
        type="button"
        onClick={() => {
          setRemote('');
          onApply(NO_TASK_FILTER);
        }}
      >
        Clear
      </button>
    </form>
  );
}

function Pager({
  total,
  offset,
  onOffset,
}: {
  total: number;
  offset: number;
  onOffset: (offset: number) => void;
}) {
  const page = pageInfo(total, offset, TASK_PAGE_SIZE);
  return (
    <nav className="pager" aria-label="History pages">
      <button
        type="button"
        onClick={() => page.previous !== null && onOffset(page.previous)}
        disabled={page.previous === null}
      >
        Newer
      </button>
      <span data-testid="task-page" aria-live="polite">
        {page.label}
      </span>
      <button
        type="button"
        onClick={() => page.next !== null && onOffset(page.next)}
        disabled={page.next === null}
      >
        Older
      </button>
    </nav>
  );
}

function TaskTable({
  caption,
  tasks,
  showProgress = false,
}: {
  caption: string;
  tasks: Task[];
  showProgress?: boolean;
}) {
  const now = Date.now();
  return (
    <table className="task-table">
      <caption className="visually-hidden">{caption}</caption>
      <thead>
        <tr>
          <th scope="col">Task</th>
          <th scope="col">State</th>
          <th scope="col">Target</th>
          <th scope="col">Owner</th>
          <th scope="col">Created</th>
          <th scope="col">{showProgress ? 'Progress' : 'Duration'}</th>
        </tr>
      </thead>
      <tbody>
        {tasks.map((task) => {
          const target = currentTargetRoute(task);
          return (
            <tr key={task.id} data-testid="task-row" data-task-id={task.id} data-state={task.state}>
              <th scope="row">
                <a href={href({ page: 'task', id: task.id })}>{task.type}</a>
              </th>
              <td>
                <TaskStateBadge state={task.state} />
              </td>
              <td title={task.target.vm ?? undefined}>
                {target ? <a href={href(target)}>{targetLabel(task)}</a> : targetLabel(task)}
              </td>
              <td className="owner">{task.owner}</td>
              <td>
                <Timestamp at={task.createdAt} />
              </td>
              <td>
                {showProgress ? (
                  <span className="cell-progress">
                    <progress
                      max={1}
                      value={task.progress}
                      aria-label={`Progress of ${task.type}`}
                    />{' '}
                    {formatPercent(task.progress)}
                  </span>
                ) : (
                  formatDuration(taskSeconds(task, now))
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
