import type { UseMutationResult } from '@tanstack/react-query';
import type { ReactNode } from 'react';
import { ConfirmDialog } from './ConfirmDialog';

/**
 * The confirmation before one mutation: confirming runs it with `variables` and closes on success
 * (after `onDone`); cancelling forgets a failed attempt's error and closes. While it runs, the
 * dialog shows it working; a failure stays in the dialog with the manager's message.
 */
export function ConfirmMutation<TData, TVariables>({
  mutation,
  variables,
  onDone,
  onClose,
  ...dialog
}: {
  mutation: UseMutationResult<TData, Error, TVariables>;
  variables: TVariables;
  onDone?: (data: TData) => void;
  onClose: () => void;
  title: string;
  confirmLabel: string;
  danger?: boolean;
  confirmDisabled?: boolean;
  children: ReactNode;
}) {
  return (
    <ConfirmDialog
      {...dialog}
      pending={mutation.isPending}
      error={mutation.error}
      onCancel={() => {
        mutation.reset();
        onClose();
      }}
      onConfirm={() =>
        mutation.mutate(variables, {
          onSuccess: (data) => {
            onDone?.(data);
            onClose();
          },
        })
      }
    />
  );
}
