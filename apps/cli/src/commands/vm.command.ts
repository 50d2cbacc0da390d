import type { Command } from 'commander';
import { CliError } from '../cli-error';
import type { CliRuntime } from '../cli-runtime';
import { EXIT } from '../exit-codes';
import { unwrap, type ApiClient } from '../http/api-client';
import { bytes, duration, fields, table } from '../output/render';
import { followTask } from '../output/task-follower';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A VM by uuid, or by its name when exactly one VM of the remote has it. */
async function vmId(api: ApiClient, remote: string, vm: string): Promise<string> {
  if (UUID.test(vm)) return vm.toLowerCase();
  const { items } = await unwrap(
    api.GET('/api/v1/remotes/{remote}/vms', { params: { path: { remote } } }),
  );
  const matches = items.filter((v) => v.name === vm);
  if (matches.length === 1) return matches[0].id;
  if (matches.length === 0) throw new CliError(`no VM named ${vm} on ${remote}`, EXIT.notFound);
  throw CliError.usage(`${matches.length} VMs on ${remote} are named ${vm}: use the uuid`);
}

const POWER = {
  start: 'Start the VM',
  shutdown: 'Ask the guest to shut down (ACPI)',
  reboot: 'Reboot the VM',
  stop: 'Stop the VM at once (power off)',
} as const;

/** Starts a task and, unless --no-wait, follows it to its end. */
async function runTask(
  runtime: CliRuntime,
  command: Command,
  api: ApiClient,
  taskId: string,
  wait: boolean,
  extra: Record<string, unknown> = {},
): Promise<void> {
  if (!wait) {
    runtime.print(command, { taskId, ...extra }, () => `task ${taskId}`);
    return;
  }
  const task = await followTask(runtime, api, taskId);
  runtime.print(command, task, () => `task ${task.id} ${task.type} ${task.state}`);
}

/** `debvisor vm …`: one VM's status, power, migration and snapshots. */
export function registerVm(program: Command, runtime: CliRuntime): void {
  const vm = program
    .command('vm')
    .description('Status, power, migration and snapshots of one VM (<remote> <vm uuid or name>)')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor vm status dc-east web-1
  $ debvisor vm reboot dc-east web-1
  $ debvisor vm migrate dc-east web-1 --target-node node-2
  $ debvisor vm snapshot create dc-east web-1 --name before-upgrade`,
    );

  vm.command('status <remote> <vm>')
    .description('What the VM is doing, where it runs, and its hardware')
    .addHelpText(
      'after',
      '\nExamples:\n  $ debvisor vm status dc-east web-1\n  $ debvisor vm status dc-east 3f0c…-… -o yaml',
    )
    .action(async (remote: string, name: string, _options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const id = await vmId(api, remote, name);
      const v = await unwrap(
        api.GET('/api/v1/remotes/{remote}/vms/{vmid}', { params: { path: { remote, vmid: id } } }),
      );
      runtime.print(command, v, () =>
        fields([
          ['name', v.name],
          ['id', v.id],
          ['remote', v.remote],
          ['node', v.node],
          ['status', `${v.status}${v.stale ? ' (stale)' : ''}`],
          ['locked by', v.lockedBy],
          ['tenant', v.tenant],
          ['vcpus', `${v.vcpus} (${v.cpuModel})`],
          ['memory', `${bytes(v.memoryUsedBytes)} of ${bytes(v.memoryBytes)}`],
          ['uptime', duration(v.uptimeSeconds)],
          ['disks', v.disks.map((d) => `${d.pool}/${d.image} ${bytes(d.sizeBytes)}`).join(', ')],
          ['nics', v.nics.map((n) => `${n.mac} on ${n.bridge}`).join(', ')],
        ]),
      );
    });

  for (const [action, what] of Object.entries(POWER) as [keyof typeof POWER, string][]) {
    vm.command(`${action} <remote> <vm>`)
      .description(`${what}; follows the task to its end`)
      .option('--no-wait', 'print the task id and return at once')
      .addHelpText(
        'after',
        `\nExamples:\n  $ debvisor vm ${action} dc-east web-1\n  $ debvisor vm ${action} dc-east web-1 --no-wait -o json | jq -r .taskId`,
      )
      .action(
        async (remote: string, name: string, options: { wait: boolean }, command: Command) => {
          const api = await runtime.api(command);
          const vmid = await vmId(api, remote, name);
          const params = { params: { path: { remote, vmid } } };
          const answer = await unwrap(
            action === 'start'
              ? api.POST('/api/v1/remotes/{remote}/vms/{vmid}/start', params)
              : action === 'shutdown'
                ? api.POST('/api/v1/remotes/{remote}/vms/{vmid}/shutdown', params)
                : action === 'reboot'
                  ? api.POST('/api/v1/remotes/{remote}/vms/{vmid}/reboot', params)
                  : api.POST('/api/v1/remotes/{remote}/vms/{vmid}/stop', params),
          );
          await runTask(runtime, command, api, answer.taskId, options.wait);
        },
      );
  }

  vm.command('migrate <remote> <vm>')
    .description(
      'Move the VM to another node (or remote): the pre-flight table, then a live progress bar',
    )
    .requiredOption('--target-node <node>', 'the node that will run the VM')
    .option('--target-remote <remote>', "another remote (default: the VM's own)")
    .option('--offline', 'move a stopped VM (its definition) instead of a live migration')
    .option('--transport <direct|tunnel>', 'default: direct within a remote, tunnel across remotes')
    .option('--mode <precopy|postcopy|auto>', 'the migration mode', 'precopy')
    .option('--auto-converge', "throttle the guest's vCPUs when pre-copy does not converge")
    .option('--allow-postcopy', 'let the policy switch to post-copy')
    .option('--downtime-limit-ms <ms>', 'the longest pause at the switchover', '300')
    .option('--bandwidth-limit <bytes/s>', '0: unlimited', '0')
    .option(
      '--timeout-per-gib <seconds>',
      'give up pre-copy after this many seconds per GiB; 0: never',
      '60',
    )
    .option('--preflight-only', 'print the pre-flight checks and stop')
    .option('--no-wait', 'start it and print the task id')
    .addHelpText(
      'after',
      `
Exit code 8 when a pre-flight check fails or the migration ends failed or cancelled.

Examples:
  $ debvisor vm migrate dc-east web-1 --target-node node-2
  $ debvisor vm migrate dc-east web-1 --target-remote dc-west --target-node w1 --preflight-only
  $ debvisor vm migrate dc-east db-1 --target-node node-3 --mode auto --allow-postcopy`,
    )
    .action(
      async (
        remote: string,
        name: string,
        options: {
          targetNode: string;
          targetRemote?: string;
          offline?: boolean;
          transport?: string;
          mode: string;
          autoConverge?: boolean;
          allowPostcopy?: boolean;
          downtimeLimitMs: string;
          bandwidthLimit: string;
          timeoutPerGib: string;
          preflightOnly?: boolean;
          wait: boolean;
        },
        command: Command,
      ) => {
        const api = await runtime.api(command);
        const vmid = await vmId(api, remote, name);
        const path = { remote, vmid };
        const body = {
          targetNode: options.targetNode,
          ...(options.targetRemote ? { targetRemote: options.targetRemote } : {}),
          ...(options.transport ? { transport: options.transport as 'direct' | 'tunnel' } : {}),
          online: !options.offline,
          mode: options.mode as 'precopy' | 'postcopy' | 'auto',
          autoConverge: options.autoConverge ?? false,
          allowPostcopy: options.allowPostcopy ?? false,
          downtimeLimitMs: Number(options.downtimeLimitMs),
          bandwidthLimitBytes: Number(options.bandwidthLimit),
          completionTimeoutSecondsPerGib: Number(options.timeoutPerGib),
          storageMap: {},
          networkMap: {},
        };
        const preflight = await unwrap(
          api.POST('/api/v1/remotes/{remote}/vms/{vmid}/migrate/preflight', {
            params: { path },
            body,
          }),
        );
        const checks = table(
          ['side', 'check', 'result', 'reason'],
          preflight.checks.map((c) => [c.side, c.name, c.result.toUpperCase(), c.reason]),
        );
        const heading = `${preflight.source.remote}/${preflight.source.node} → ${preflight.target.remote}/${preflight.target.node} (${preflight.transport})`;
        if (options.preflightOnly || !preflight.ok) {
          runtime.print(command, preflight, () => `${heading}\n${checks}`);
          if (!preflight.ok) {
            runtime.note('pre-flight failed: not migrating');
            runtime.exitCode = EXIT.taskFailed;
          }
          return;
        }
        runtime.note(`${heading}\n${checks}`);
        const { taskId } = await unwrap(
          api.POST('/api/v1/remotes/{remote}/vms/{vmid}/migrate', { params: { path }, body }),
        );
        runtime.note(`migration task ${taskId}`);
        await runTask(runtime, command, api, taskId, options.wait);
      },
    );

  const snapshot = vm
    .command('snapshot')
    .description('Snapshots of a VM: list, create, delete, rollback')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor vm snapshot list dc-east web-1
  $ debvisor vm snapshot create dc-east web-1 --name before-upgrade --description "kernel 6.12"
  $ debvisor vm snapshot rollback dc-east web-1 before-upgrade --stop-first
  $ debvisor vm snapshot delete dc-east web-1 before-upgrade`,
    );

  snapshot
    .command('list <remote> <vm>')
    .description("The VM's snapshots, oldest first")
    .addHelpText('after', '\nExample:\n  $ debvisor vm snapshot list dc-east web-1 -o json')
    .action(async (remote: string, name: string, _options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const vmid = await vmId(api, remote, name);
      const { items } = await unwrap(
        api.GET('/api/v1/remotes/{remote}/vms/{vmid}/snapshots', {
          params: { path: { remote, vmid } },
        }),
      );
      runtime.print(command, items, () =>
        table(
          ['name', 'created', 'consistency', 'disks', 'description'],
          items.map((s) => [s.name, s.createdAt, s.consistency, s.disks.length, s.description]),
        ),
      );
    });

  snapshot
    .command('create <remote> <vm>')
    .description('Take a snapshot (filesystems frozen through the guest agent when it answers)')
    .option('--name <name>', 'default: manual-<UTC time>')
    .option('--description <text>', 'kept with the snapshot')
    .option('--no-freeze', 'do not freeze the filesystems (crash-consistent)')
    .option('--no-wait', 'print the task id and return at once')
    .addHelpText(
      'after',
      '\nExample:\n  $ debvisor vm snapshot create dc-east web-1 --name before-upgrade',
    )
    .action(
      async (
        remote: string,
        name: string,
        options: { name?: string; description?: string; freeze: boolean; wait: boolean },
        command: Command,
      ) => {
        const api = await runtime.api(command);
        const vmid = await vmId(api, remote, name);
        const answer = await unwrap(
          api.POST('/api/v1/remotes/{remote}/vms/{vmid}/snapshots', {
            params: { path: { remote, vmid } },
            body: {
              freeze: options.freeze,
              ...(options.name ? { name: options.name } : {}),
              ...(options.description ? { description: options.description } : {}),
            },
          }),
        );
        runtime.note(`snapshot ${answer.snapshot}`);
        await runTask(runtime, command, api, answer.taskId, options.wait, {
          snapshot: answer.snapshot,
        });
      },
    );

  snapshot
    .command('delete <remote> <vm> <snapshot>')
    .description('Delete a snapshot')
    .option('--no-wait', 'print the task id and return at once')
    .addHelpText(
      'after',
      '\nExample:\n  $ debvisor vm snapshot delete dc-east web-1 before-upgrade',
    )
    .action(
      async (
        remote: string,
        name: string,
        snap: string,
        options: { wait: boolean },
        command: Command,
      ) => {
        const api = await runtime.api(command);
        const vmid = await vmId(api, remote, name);
        const answer = await unwrap(
          api.DELETE('/api/v1/remotes/{remote}/vms/{vmid}/snapshots/{snapshot}', {
            params: { path: { remote, vmid, snapshot: snap } },
          }),
        );
        await runTask(runtime, command, api, answer.taskId, options.wait, { snapshot: snap });
      },
    );

  snapshot
    .command('rollback <remote> <vm> <snapshot>')
    .description('Roll the VM back to a snapshot (the VM must be stopped, or pass --stop-first)')
    .option('--stop-first', 'stop the VM first when it runs')
    .option('--no-wait', 'print the task id and return at once')
    .addHelpText(
      'after',
      '\nExample:\n  $ debvisor vm snapshot rollback dc-east web-1 before-upgrade --stop-first',
    )
    .action(
      async (
        remote: string,
        name: string,
        snap: string,
        options: { stopFirst?: boolean; wait: boolean },
        command: Command,
      ) => {
        const api = await runtime.api(command);
        const vmid = await vmId(api, remote, name);
        const answer = await unwrap(
          api.POST('/api/v1/remotes/{remote}/vms/{vmid}/snapshots/{snapshot}/rollback', {
            params: { path: { remote, vmid, snapshot: snap } },
            body: { stopFirst: options.stopFirst ?? false },
          }),
        );
        await runTask(runtime, command, api, answer.taskId, options.wait, { snapshot: snap });
      },
    );
}
