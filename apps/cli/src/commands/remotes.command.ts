import type { Command } from 'commander';
import { CliError } from '../cli-error';
import type { CliRuntime } from '../cli-runtime';
import { normalizeFingerprint } from '../config/cli-config';
import { EXIT } from '../exit-codes';
import { unwrap } from '../http/api-client';
import { fields, table } from '../output/render';

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `debvisor remotes …`: the clusters the manager federates. */
export function registerRemotes(program: Command, runtime: CliRuntime): void {
  const remotes = program
    .command('remotes')
    .description('List, add, test and remove remotes (DebVisor clusters)')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor remotes list
  $ DEBVISOR_AGENT_KEY=dvk_… debvisor remotes add dc-east --endpoint node1.east:7443 --endpoint node2.east:7443
  $ debvisor remotes test dc-east
  $ debvisor remotes remove dc-east --yes`,
    );

  remotes
    .command('list')
    .description('The remotes you may see, with their pinned CA and credentials')
    .addHelpText(
      'after',
      '\nExamples:\n  $ debvisor remotes list\n  $ debvisor remotes list -o json',
    )
    .action(async (_options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const { items } = await unwrap(api.GET('/api/v1/remotes'));
      runtime.print(command, items, () =>
        table(
          ['id', 'endpoints', 'ca fingerprint', 'credentials', 'description'],
          items.map((r) => [
            r.id,
            r.endpoints.join(','),
            `${r.trust.caFingerprint.slice(0, 23)}…`,
            r.credentials.map((c) => c.name).join(','),
            r.description,
          ]),
        ),
      );
    });

  remotes
    .command('add <id>')
    .description(
      'Add a remote: shows the CA the agent presents for you to confirm, then pins it and tests the connection',
    )
    .requiredOption('--endpoint <host:port>', 'an agent endpoint (repeat for several)', collect)
    .option('--description <text>', 'what the remote is', '')
    .option('--credential <name>', 'the name of the credential', 'admin')
    .option('--key-stdin', 'read the agent API key from standard input (else DEBVISOR_AGENT_KEY)')
    .option(
      '--ca-fingerprint <sha256>',
      'the CA fingerprint you expect (no question asked when it matches)',
    )
    .option('-y, --yes', 'trust the presented CA without asking')
    .option('--add-anyway', 'store the remote even when the connection test fails')
    .addHelpText(
      'after',
      `
The agent API key (dvk_…) is read from DEBVISOR_AGENT_KEY or standard input, never from an argument.

Examples:
  $ DEBVISOR_AGENT_KEY=dvk_… debvisor remotes add dc-east --endpoint node1.east:7443
  $ pass show agents/dc-west | debvisor remotes add dc-west --endpoint 10.0.2.11:7443 --key-stdin --ca-fingerprint 9C:41:…`,
    )
    .action(
      async (
        id: string,
        options: {
          endpoint: string[];
          description: string;
          credential: string;
          keyStdin?: boolean;
          caFingerprint?: string;
          yes?: boolean;
          addAnyway?: boolean;
        },
        command: Command,
      ) => {
        const key = options.keyStdin
          ? await runtime.readStdin('agent API key')
          : runtime.io.env.DEBVISOR_AGENT_KEY;
        if (!key)
          throw CliError.usage('no agent API key: set DEBVISOR_AGENT_KEY or pass --key-stdin');
        if (options.caFingerprint !== undefined && !normalizeFingerprint(options.caFingerprint))
          throw CliError.usage('--ca-fingerprint: not a SHA-256 fingerprint (64 hex digits)');
        const api = await runtime.api(command);
        const probe = await unwrap(
          api.POST('/api/v1/remotes/probe', { body: { endpoint: options.endpoint[0] } }),
        );
        runtime.note(`${probe.endpoint} presents:`);
        runtime.note(
          table(
            ['subject', 'issuer', 'ca', 'sha256 fingerprint'],
            probe.certificates.map((c) => [c.subject, c.issuer, c.isCa, c.fingerprintSha256]),
          ),
        );
        const cas = probe.certificates.filter((c) => c.isCa);
        let pinned: string;
        if (options.caFingerprint) {
          const wanted = normalizeFingerprint(options.caFingerprint);
          const match = probe.certificates.find(
            (c) => normalizeFingerprint(c.fingerprintSha256) === wanted,
          );
          if (!match)
            throw new CliError(
              `${probe.endpoint} presents no certificate with the fingerprint ${options.caFingerprint}; not adding`,
              EXIT.declined,
            );
          pinned = match.fingerprintSha256;
        } else {
          const root = cas.at(-1);
          if (!root)
            throw new CliError(
              `${probe.endpoint} presents no CA certificate to pin; not adding`,
              EXIT.failed,
            );
          runtime.note(`CA to pin: ${root.subject}\n  SHA-256 ${root.fingerprintSha256}`);
          await runtime.confirm(
            'Compare the fingerprint with the cluster. Trust this CA?',
            options.yes,
          );
          pinned = root.fingerprintSha256;
        }
        const created = await unwrap(
          api.POST('/api/v1/remotes', {
            body: {
              id,
              description: options.description,
              endpoints: options.endpoint,
              caFingerprint: pinned,
              credentials: [{ name: options.credential, key }],
              addAnyway: options.addAnyway ?? false,
            },
          }),
        );
        runtime.print(command, created, () =>
          fields([
            ['remote', created.id],
            ['endpoints', created.endpoints.join(', ')],
            ['ca fingerprint', created.trust.caFingerprint],
            [
              'connection',
              created.connection.ok ? 'ok' : `failed: ${created.connection.error?.message ?? '?'}`,
            ],
            ['cluster', created.connection.clusterId],
            ['nodes', created.connection.nodeCount],
            ['agent', created.connection.agentVersion],
          ]),
        );
        if (!created.connection.ok) runtime.exitCode = EXIT.taskFailed;
      },
    );

  remotes
    .command('test <id>')
    .description('Read the remote now: answers online, or why it is not (exit code 8)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ debvisor remotes test dc-east\n  $ debvisor remotes test dc-east -o json | jq .status',
    )
    .action(async (id: string, _options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const { remotes: statuses } = await unwrap(
        api.GET('/api/v1/resources/refresh', { params: { query: { remote: id } } }),
      );
      const status = statuses.find((s) => s.remote === id);
      if (!status) throw new CliError(`the manager did not report on ${id}`, EXIT.failed);
      runtime.print(command, status, () =>
        fields([
          ['remote', status.remote],
          ['status', status.status],
          ['health', status.health],
          ['nodes', `${status.nodes.alive}/${status.nodes.total} alive`],
          ['vms', `${status.vms.running}/${status.vms.total} running`],
          ['last answer', status.lastRefreshAt],
          ['error', status.error ? `${status.error.code}: ${status.error.message}` : null],
        ]),
      );
      if (status.status !== 'online') runtime.exitCode = EXIT.taskFailed;
    });

  remotes
    .command('remove <id>')
    .description('Remove a remote from the manager (the cluster itself is untouched)')
    .option('-y, --yes', 'do not ask')
    .addHelpText('after', '\nExample:\n  $ debvisor remotes remove dc-old --yes')
    .action(async (id: string, options: { yes?: boolean }, command: Command) => {
      const api = await runtime.api(command);
      await unwrap(api.GET('/api/v1/remotes/{remote}', { params: { path: { remote: id } } }));
      await runtime.confirm(`Remove the remote ${id} from the manager?`, options.yes);
      await unwrap(api.DELETE('/api/v1/remotes/{remote}', { params: { path: { remote: id } } }));
      runtime.print(command, { removed: id }, () => `remote ${id} removed`);
    });
}
