import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useCallback } from 'react';
import { api, unwrap } from '../api/client';
import { taskKeys } from '../tasks/queries';
import type { MigrateBody } from './migration-form';
import { migrationKeys } from './queries';

interface MigrationRequest {
  remote: string;
  vmid: string;
  body: MigrateBody;
}

/** POST …/migrate/preflight: both ends' checks; nothing is reserved. */
export function usePreflight() {
  return useMutation({
    mutationFn: ({ remote, vmid, body }: MigrationRequest) =>
      unwrap(
        api.POST('/api/v1/remotes/{remote}/vms/{vmid}/migrate/preflight', {
          params: { path: { remote, vmid } },
          body,
        }),
      ),
  });
}

/** POST …/migrate: 202 with the task that carries the migration out. */
export function useStartMigration() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: ({ remote, vmid, body }: MigrationRequest) =>
      unwrap(
        api.POST('/api/v1/remotes/{remote}/vms/{vmid}/migrate', {
          params: { path: { remote, vmid } },
          body,
        }),
      ),
    onSuccess: (_accepted, { remote, vmid }) => {
      void queryClient.invalidateQueries({ queryKey: taskKeys.lists() });
      void queryClient.invalidateQueries({ queryKey: migrationKeys.vm(remote, vmid) });
    },
  });
}

/** Whether a query's key names this VM at this remote (its detail, snapshots, replication …). */
export function isAbout(
  queryKey: readonly unknown[],
  at: { remote: string; vmid: string },
): boolean {
  return queryKey.includes(at.remote) && queryKey.includes(at.vmid);
}

/**
 * Once a migration has ended, everything else the UI holds about the VM and its remotes is stale
 * (it may be at another remote now): reload it all, except the tasks, which poll by themselves,
 * and except the VM at the remote it `left` — asking for it there answers a 404 (a console error).
 */
export function useAfterMigration() {
  const queryClient = useQueryClient();
  return useCallback(
    (left?: { remote: string; vmid: string }) =>
      void queryClient.invalidateQueries({
        predicate: (query) =>
          query.queryKey[0] !== taskKeys.all[0] && !(left && isAbout(query.queryKey, left)),
      }),
    [queryClient],
  );
}
