import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';
import { isActive, listRefreshMs, type Task, type TaskState } from './task-view';

/** The query of GET /api/v1/tasks (taskListQuery builds it from the page's filter). */
export interface TaskListQuery {
  state?: TaskState;
  type?: string;
  remote?: string;
  vm?: string;
  limit: number;
  offset: number;
}

// GET successes are documented as the OpenAPI `default` answer, which openapi-fetch types as an error: the answers are named here.
type TaskList = Schemas['TaskListDto_Output'];

export const taskKeys = {
  all: ['tasks'] as const,
  lists: () => [...taskKeys.all, 'list'] as const,
  list: (query: TaskListQuery) => [...taskKeys.lists(), query] as const,
  details: () => [...taskKeys.all, 'detail'] as const,
  detail: (id: string) => [...taskKeys.details(), id] as const,
};

/** A page of tasks, newest first; polls every 2 s while one of them is queued or running. */
export function useTaskList(query: TaskListQuery) {
  return useQuery({
    queryKey: taskKeys.list(query),
    queryFn: (): Promise<TaskList> => unwrap(api.GET('/api/v1/tasks', { params: { query } })),
    placeholderData: keepPreviousData,
    refetchInterval: (q) => listRefreshMs(q.state.data?.items),
  });
}

/** One task with its log (and a migration's phase, figures and journal); polls every `refreshMs` until it has ended. */
export function useTask(id: string | null, refreshMs = 1000) {
  return useQuery({
    queryKey: taskKeys.detail(id ?? ''),
    queryFn: (): Promise<Task> =>
      unwrap(api.GET('/api/v1/tasks/{id}', { params: { path: { id: id! } } })),
    enabled: id !== null,
    refetchInterval: (q) => {
      if (q.state.status === 'error') return false;
      const task = q.state.data;
      return task && !isActive(task.state) ? false : refreshMs;
    },
  });
}
