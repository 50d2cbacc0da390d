import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';
import {
  isActive,
  listRefreshMs,
  type Task,
  type TaskState,
  type VmWhereabouts,
} from './task-view';

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
type ResourceList = Schemas['ResourceList_Output'];

/** VM ids per search: `id:<uuid>` is 39 characters, and a search is at most 512. */
const IDS_PER_SEARCH = 12;

/**
 * Where the VMs with these ids are now (name, remote, node), from the resource cache: the tasks
 * name a VM by its uuid and the remote it was on when the task began. `enabled`: the caller may
 * read resources (remote.audit); VMs the caller may not see stay unnamed.
 */
export function useVmWhereabouts(ids: readonly (string | null)[], enabled: boolean) {
  const wanted = [...new Set(ids.filter((id): id is string => !!id))].sort();
  return useQuery({
    queryKey: ['resources', 'whereabouts', wanted],
    queryFn: async (): Promise<Map<string, VmWhereabouts>> => {
      const chunks: string[][] = [];
      for (let i = 0; i < wanted.length; i += IDS_PER_SEARCH)
        chunks.push(wanted.slice(i, i + IDS_PER_SEARCH));
      const lists: ResourceList[] = await Promise.all(
        chunks.map((chunk) =>
          unwrap(
            api.GET('/api/v1/resources', {
              params: {
                query: {
                  type: 'vm',
                  q: chunk.map((id) => `id:${id}`).join(' '),
                  limit: chunk.length,
                },
              },
            }),
          ),
        ),
      );
      return new Map(
        lists.flatMap((list) =>
          list.items.flatMap((item) =>
            item.type === 'vm'
              ? [[item.id, { name: item.name, remote: item.remote, node: item.node }] as const]
              : [],
          ),
        ),
      );
    },
    enabled: enabled && wanted.length > 0,
    staleTime: 5000,
    placeholderData: keepPreviousData,
  });
}

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
