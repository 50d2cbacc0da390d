import { useQueries, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, ApiError, definedOnly, unwrap, type Schemas } from '../api/client';
import { PAGE_SIZE, pageOffset, type Sort } from './paging';

export type VmResource = Schemas['VmResource_Output'];
export type NodeResource = Schemas['NodeResource_Output'];
export type RemoteStatus = Schemas['RemoteStatus_Output'];
export type ResourceList = Schemas['ResourceList_Output'];
export type VmDetail = Schemas['VmDetail_Output'];
export type Task = Schemas['TaskDto_Output'];
export type TaskList = Schemas['TaskListDto_Output'];

export const resourceKeys = {
  all: ['resources'] as const,
  tree: () => [...resourceKeys.all, 'tree'] as const,
  vmLists: () => [...resourceKeys.all, 'vms'] as const,
  vmList: (q: string, sort: Sort | undefined) =>
    [...resourceKeys.vmLists(), q, sort ?? 'default'] as const,
  vmPage: (q: string, sort: Sort | undefined, page: number) =>
    [...resourceKeys.vmList(q, sort), page] as const,
  vm: (remote: string, vmid: string) => [...resourceKeys.all, 'vm', remote, vmid] as const,
  vmTasks: (remote: string, vmid: string) => [...resourceKeys.vm(remote, vmid), 'tasks'] as const,
  task: (id: string) => [...resourceKeys.all, 'task', id] as const,
  owners: () => [...resourceKeys.all, 'vm-owners'] as const,
};

/** A refusal (4xx) stays one until something changes: polling it again only adds load. */
const refusedOr = (interval: number) => (query: { state: { error: Error | null } }) =>
  query.state.error instanceof ApiError && query.state.error.status < 500 ? false : interval;

/** Enough for every node of 100 remotes of a few dozen nodes each (the manager's page limit is 5,000). */
const TREE_LIMIT = 5000;

export interface ResourceTree {
  remotes: RemoteStatus[];
  nodes: NodeResource[];
}

/** The remotes and their nodes for the tree (GET /resources?type=node), with each remote's status. */
export function useResourceTree() {
  return useQuery({
    queryKey: resourceKeys.tree(),
    queryFn: async (): Promise<ResourceTree> => {
      const list: ResourceList = await unwrap(
        api.GET('/api/v1/resources', { params: { query: { type: 'node', limit: TREE_LIMIT } } }),
      );
      return {
        remotes: list.remotes,
        nodes: list.items.filter((item): item is NodeResource => item.type === 'node'),
      };
    },
    refetchInterval: refusedOr(30_000),
  });
}

/** One page of the VMs matching `q` (each page answers the total too). */
function vmPageQuery(q: string, sort: Sort | undefined, page: number) {
  return {
    queryKey: resourceKeys.vmPage(q, sort, page),
    queryFn: (): Promise<ResourceList> =>
      unwrap(
        api.GET('/api/v1/resources', {
          params: {
            query: definedOnly({
              type: 'vm' as const,
              q,
              sort,
              limit: PAGE_SIZE,
              offset: pageOffset(page),
            }),
          },
        }),
      ),
    staleTime: 15_000,
  };
}

/** The first page of the VMs matching `q`: it says how many match (or why the search is wrong: 400). */
export function useFirstVmPage(q: string, sort: Sort | undefined) {
  return useQuery(vmPageQuery(q, sort, 0));
}

export interface VmPages {
  /** The loaded pages by index. */
  pages: Map<number, VmResource[]>;
  fetching: boolean;
  /** When the newest of them was fetched. */
  updatedAt: number;
}

/**
 * The pages the visible rows need, one query per page of PAGE_SIZE; pages stay cached, so
 * scrolling back costs nothing.
 */
export function useVmPages(q: string, sort: Sort | undefined, pages: readonly number[]): VmPages {
  return useQueries({
    queries: pages.map((page) => vmPageQuery(q, sort, page)),
    combine: (results) => {
      const loaded = new Map<number, VmResource[]>();
      results.forEach((result, i) => {
        if (result.data)
          loaded.set(
            pages[i],
            result.data.items.filter((item): item is VmResource => item.type === 'vm'),
          );
      });
      return {
        pages: loaded,
        fetching: results.some((r) => r.isFetching),
        updatedAt: Math.max(0, ...results.map((r) => r.dataUpdatedAt)),
      };
    },
  });
}

/** The Refresh button of the resources page: everything it shows is fetched again. */
export function useReloadResources() {
  const queryClient = useQueryClient();
  return () => queryClient.invalidateQueries({ queryKey: resourceKeys.all });
}

/** Which tenant group owns which VM, for callers who may read it (access.audit); others see the VM's own tenant. */
export function useVmOwners(enabled: boolean) {
  return useQuery({
    queryKey: resourceKeys.owners(),
    queryFn: async (): Promise<Map<string, string>> => {
      const list: Schemas['VmOwnerListDto_Output'] = await unwrap(
        api.GET('/api/v1/access/vm-owners'),
      );
      return new Map(list.items.map((owner) => [owner.vm.toLowerCase(), owner.tenantGroup]));
    },
    enabled,
    staleTime: 60_000,
  });
}

/** One VM with its hardware and the caller's privileges on it; polled faster while an action runs. */
export function useVm(remote: string, vmid: string, busy = false) {
  return useQuery({
    queryKey: resourceKeys.vm(remote, vmid),
    queryFn: (): Promise<VmDetail> =>
      unwrap(
        api.GET('/api/v1/remotes/{remote}/vms/{vmid}', { params: { path: { remote, vmid } } }),
      ),
    refetchInterval: refusedOr(busy ? 1_500 : 10_000),
  });
}

/** The VM's tasks (newest first). */
export function useVmTasks(remote: string, vmid: string, enabled = true) {
  return useQuery({
    queryKey: resourceKeys.vmTasks(remote, vmid),
    queryFn: (): Promise<TaskList> =>
      unwrap(api.GET('/api/v1/tasks', { params: { query: { remote, vm: vmid, limit: 20 } } })),
    enabled,
    refetchInterval: refusedOr(10_000),
  });
}

const FINISHED = new Set(['succeeded', 'failed', 'cancelled']);

/** Whether a task has ended. */
export const taskFinished = (task: Pick<Task, 'state'>) => FINISHED.has(task.state);

/** A task just started from this page, followed until it ends. */
export function useFollowedTask(id: string | null) {
  return useQuery({
    queryKey: resourceKeys.task(id ?? ''),
    queryFn: (): Promise<Task> =>
      unwrap(api.GET('/api/v1/tasks/{id}', { params: { path: { id: id ?? '' } } })),
    enabled: id !== null,
    refetchInterval: (query) =>
      (query.state.data && taskFinished(query.state.data)) || query.state.error ? false : 1_000,
  });
}
