import type { Command } from 'commander';
import type { CliRuntime } from '../cli-runtime';
import { unwrap } from '../http/api-client';
import { bytes, table } from '../output/render';

/** `debvisor resources [search…]`: nodes and VMs of every remote, with the UI's search syntax. */
export function registerResources(program: Command, runtime: CliRuntime): void {
  program
    .command('resources [search...]')
    .description("Nodes and VMs of every remote, filtered with the web UI's search syntax")
    .option('--sort <order>', 'name, status, remote, node, cpu, memory; - for descending (-memory)')
    .option('--limit <n>', 'at most this many', '1000')
    .addHelpText(
      'after',
      `
Search: space-separated terms, all must match. key:value with the keys remote, node, status,
name, tenant, type, id, label (label:env=prod, or label:env); values may be double-quoted
(name:"web 1"); a repeated key matches any of its values; a bare word is part of the name.

Examples:
  $ debvisor resources
  $ debvisor resources type:vm status:running remote:dc-east
  $ debvisor resources 'web label:env=prod' --sort -memory -o json`,
    )
    .action(
      async (search: string[], options: { sort?: string; limit: string }, command: Command) => {
        const api = await runtime.api(command);
        const q = search.join(' ').trim();
        const answer = await unwrap(
          api.GET('/api/v1/resources', {
            params: {
              query: {
                ...(q ? { q } : {}),
                ...(options.sort ? { sort: options.sort as never } : {}),
                limit: Number(options.limit),
              },
            },
          }),
        );
        runtime.print(
          command,
          answer,
          () =>
            table(
              ['type', 'remote', 'name', 'status', 'node', 'cpu', 'memory', 'id'],
              answer.items.map((r) =>
                r.type === 'vm'
                  ? [
                      'vm',
                      r.remote,
                      r.name,
                      `${r.status}${r.stale ? ' (stale)' : ''}`,
                      r.node,
                      `${r.vcpus} vcpu`,
                      bytes(r.memoryBytes),
                      r.id,
                    ]
                  : [
                      'node',
                      r.remote,
                      r.name,
                      r.state,
                      r.id,
                      `${r.cpuCount} cpu ${Math.round(r.cpuUsage * 100)}%`,
                      `${bytes(r.memoryUsedBytes)}/${bytes(r.memoryTotalBytes)}`,
                      '',
                    ],
              ),
            ) + `\n${answer.items.length} of ${answer.total}`,
        );
      },
    );
}
