import type { Schemas } from '../api/client';
import type { Route } from '../view';

/** A task as GET /api/v1/tasks/{id} answers it (the list answers the same shape). */
export type Task = Schemas['TaskDto_Output'];
export type TaskState = Task['state'];

export const TASK_STATES: readonly TaskState[] = [
  'queued',
  'running',
  'succeeded',
  'failed',
  'cancelled',
];
/** The task types the manager runs (its OpenAPI description lists them). */
export const TASK_TYPES = [
  'vm.start',
  'vm.shutdown',
  'vm.reboot',
  'vm.stop',
  'vm.migrate',
] as const;

/** The history's page size. */
export const TASK_PAGE_SIZE = 25;

/** Queued or running: the task may still change (and be cancelled). */
export function isActive(state: TaskState): boolean {
  return state === 'queued' || state === 'running';
}

/** What the history filter holds; empty strings mean "any". */
export interface TaskFilter {
  state: TaskState | '';
  type: string;
  remote: string;
}

export const NO_TASK_FILTER: TaskFilter = { state: '', type: '', remote: '' };

/** The query of GET /api/v1/tasks for a filter and a page (empty filters left out). */
export function taskListQuery(filter: TaskFilter, offset: number, limit = TASK_PAGE_SIZE) {
  const query: {
    state?: TaskState;
    type?: string;
    remote?: string;
    limit: number;
    offset: number;
  } = { limit, offset: Math.max(0, offset) };
  if (filter.state) query.state = filter.state;
  if (filter.type.trim()) query.type = filter.type.trim();
  if (filter.remote.trim()) query.remote = filter.remote.trim();
  return query;
}

/** Where a page of `total` items starts and ends, and whether there is one before and after. */
export function pageInfo(total: number, offset: number, limit: number) {
  const first = total === 0 ? 0 : Math.min(offset + 1, total);
  const last = Math.min(offset + limit, total);
  return {
    label: total === 0 ? 'No tasks' : `${first}–${last} of ${total}`,
    previous: offset > 0 ? Math.max(0, offset - limit) : null,
    next: offset + limit < total ? offset + limit : null,
  };
}

/** The VM page of a task's target, when the task is about a VM. */
export function targetRoute(task: Pick<Task, 'target'>): Route | null {
  const { remote, vm } = task.target;
  return remote && vm ? { page: 'vm', remote, vmid: vm } : null;
}

/**
 * A task's target in words: the VM's name and where it is now ("web-01 on dc-west / west-2", as
 * the manager lists it); "dc-east / 4f1c…" when the manager no longer lists the VM or the caller
 * may not see where it is.
 */
export function targetLabel(task: Pick<Task, 'target' | 'vm'>): string {
  const { remote, vm } = task.target;
  if (!remote && !vm) return '—';
  if (!vm) return remote ?? '—';
  if (task.vm) return `${task.vm.name} on ${task.vm.remote} / ${task.vm.node || '?'}`;
  return `${remote ?? '?'} / ${vm.slice(0, 8)}…`;
}

/** The route to a task's VM where it is now (it may have moved to another remote), else where the task names it. */
export function currentTargetRoute(task: Pick<Task, 'target' | 'vm'>): Route | null {
  if (task.vm && task.target.vm)
    return { page: 'vm', remote: task.vm.remote, vmid: task.target.vm };
  return targetRoute(task);
}

/** The lines of a migration's log that its journal (the `[phase] …` lines, shown above) does not already show. */
export function logBesidesJournal(task: Pick<Task, 'type' | 'log' | 'migration'>): Task['log'] {
  if (task.type !== 'vm.migrate' || !task.migration) return task.log;
  return task.log.filter(
    (line) => !/^\[(preflight|prepare|transfer|completed|failed|cancelled)\] /.test(line.message),
  );
}

/** How long a task ran (or has been running, at `now`); null before it started. */
export function taskSeconds(
  task: Pick<Task, 'startedAt' | 'finishedAt'>,
  now: number,
): number | null {
  if (!task.startedAt) return null;
  const end = task.finishedAt ? Date.parse(task.finishedAt) : now;
  return Math.max(0, (end - Date.parse(task.startedAt)) / 1000);
}

/** The list's polling: every 2 s while a task is queued or running, else every 15 s to notice new ones. */
export function listRefreshMs(tasks: readonly Pick<Task, 'state'>[] | undefined): number {
  return tasks?.some((task) => isActive(task.state)) ? 2000 : 15_000;
}

/** No filter set: the whole history. */
export function isUnfiltered(filter: TaskFilter): boolean {
  return !filter.state && !filter.type.trim() && !filter.remote.trim();
}
