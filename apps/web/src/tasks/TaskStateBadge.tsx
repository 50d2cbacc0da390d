import type { TaskState } from './task-view';

/** A task's state as a coloured word (badge-<state> in styles.css). */
export function TaskStateBadge({ state }: { state: TaskState }) {
  return (
    <span className={`badge badge-${state}`} data-testid="task-state">
      {state}
    </span>
  );
}
