import { useEffect, useRef, useState } from 'react';
import { taskFinished, useFollowedTask, type Task } from '../resources/queries';
import { href } from '../view';

/** What an action just asked for is doing (its task, with a link), announced as it changes. */
export function FollowedTask({ task, label }: { task: Task | undefined; label: string }) {
  if (!task) return <p role="status">{label} requested…</p>;
  return (
    <p
      role="status"
      className={task.state === 'failed' ? 'error' : undefined}
      data-testid="followed-task"
      data-state={task.state}
    >
      {label}: <a href={href({ page: 'task', id: task.id })}>task {task.state}</a>
      {task.error && ` — ${task.error}`}
    </p>
  );
}

/**
 * The task (202 + task id) of the last action started from a panel, polled until it ends; `onEnd`
 * runs once when it does (to reload what the action changed).
 */
export function useTaskFollow(onEnd: () => void) {
  const [followed, setFollowed] = useState<{ id: string; label: string } | null>(null);
  const task = useFollowedTask(followed?.id ?? null);
  const finished = task.data && taskFinished(task.data) ? task.data.id : null;
  const ended = useRef(onEnd);
  ended.current = onEnd;
  useEffect(() => {
    if (finished) ended.current();
  }, [finished]);
  return {
    follow: (id: string, label: string) => setFollowed({ id, label }),
    /** A task is queued or running. */
    busy: followed !== null && !(task.data && taskFinished(task.data)),
    view: followed ? <FollowedTask task={task.data} label={followed.label} /> : null,
    error: task.error,
  };
}
