import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api, unwrap } from '../api/client';
import { taskKeys } from './queries';

/**
 * POST /tasks/{id}/cancel: a queued task ends at once, a running one once it has stopped (the
 * task's own polling shows when). Every task list and the task itself are reloaded.
 */
export function useCancelTask() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (id: string) =>
      unwrap(api.POST('/api/v1/tasks/{id}/cancel', { params: { path: { id } } })),
    onSuccess: (task) => queryClient.setQueryData(taskKeys.detail(task.id), task),
    onSettled: () => queryClient.invalidateQueries({ queryKey: taskKeys.all }),
  });
}
