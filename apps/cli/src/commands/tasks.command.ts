import type { Command } from 'commander';
import type { CliRuntime } from '../cli-runtime';
import { unwrap } from '../http/api-client';
import { table } from '../output/render';
import { followTask } from '../output/task-follower';

const STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;

/** `debvisor tasks …`: the manager's long-running operations. */
export function registerTasks(program: Command, runtime: CliRuntime): void {
  const tasks = program
    .command('tasks')
    .description('List, follow and cancel tasks (power, migration, snapshots, replication)')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor tasks list --state running
  $ debvisor tasks follow 6b1c…
  $ debvisor tasks cancel 6b1c…`,
    );

  tasks
    .command('list')
    .description('Tasks you may see, newest first')
    .option('--state <state>', STATES.join(' | '))
    .option('--type <type>', 'vm.migrate, vm.start …')
    .option('--remote <remote>', 'tasks of this remote')
    .option('--vm <uuid>', 'tasks of this VM')
    .option('--limit <n>', 'at most this many (1-500)', '50')
    .addHelpText(
      'after',
      '\nExamples:\n  $ debvisor tasks list\n  $ debvisor tasks list --type vm.migrate --state failed -o json',
    )
    .action(
      async (
        options: {
          state?: (typeof STATES)[number];
          type?: string;
          remote?: string;
          vm?: string;
          limit: string;
        },
        command: Command,
      ) => {
        const api = await runtime.api(command);
        const page = await unwrap(
          api.GET('/api/v1/tasks', {
            params: {
              query: {
                ...(options.state ? { state: options.state } : {}),
                ...(options.type ? { type: options.type } : {}),
                ...(options.remote ? { remote: options.remote } : {}),
                ...(options.vm ? { vm: options.vm } : {}),
                limit: Number(options.limit),
                offset: 0,
              },
            },
          }),
        );
        runtime.print(
          command,
          page,
          () =>
            table(
              ['id', 'type', 'state', 'progress', 'remote', 'vm', 'owner', 'created'],
              page.items.map((t) => [
                t.id,
                t.type,
                t.state,
                `${Math.round(t.progress * 100)}%`,
                t.target.remote,
                t.target.vm,
                t.owner,
                t.createdAt,
              ]),
            ) + `\n${page.items.length} of ${page.total}`,
        );
      },
    );

  tasks
    .command('follow <id>')
    .description(
      'Follow a task to its end with a progress bar (exit code 8 when it fails or is cancelled)',
    )
    .addHelpText('after', '\nExample:\n  $ debvisor tasks follow 6b1c4c3e-…')
    .action(async (id: string, _options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const task = await followTask(runtime, api, id);
      runtime.print(command, task, () => `task ${task.id} ${task.type} ${task.state}`);
    });

  tasks
    .command('cancel <id>')
    .description('Cancel a task: a queued one at once, a running one once it has stopped')
    .addHelpText('after', '\nExample:\n  $ debvisor tasks cancel 6b1c4c3e-…')
    .action(async (id: string, _options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const task = await unwrap(
        api.POST('/api/v1/tasks/{id}/cancel', { params: { path: { id } } }),
      );
      runtime.print(command, task, () => `task ${task.id} ${task.state} (cancel requested)`);
    });
}
