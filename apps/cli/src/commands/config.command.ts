import type { Command } from 'commander';
import { CliError } from '../cli-error';
import type { CliRuntime } from '../cli-runtime';
import {
  configPath,
  contextSchema,
  readConfigFile,
  writeConfigFile,
  type CliContext,
} from '../config/cli-config';
import { presentedChain } from '../http/manager-transport';
import { table } from '../output/render';

function fileOf(runtime: CliRuntime, command: Command): string {
  return configPath(runtime.io.env, command.optsWithGlobals<{ config?: string }>().config);
}

/** `debvisor config …`: the named contexts of the config file, as kubectl has them. */
export function registerConfig(program: Command, runtime: CliRuntime): void {
  const config = program
    .command('config')
    .description('Manage the contexts of the config file (manager URL, trusted CA, token)')
    .addHelpText(
      'after',
      `
The config file (mode 0600, else refused) holds named contexts:
  current-context: prod
  contexts:
    - name: prod
      server: https://manager.example.net:8443
      ca-fingerprint: 3F:2A:…        # or ca-file: /etc/debvisor/manager-ca.crt
      token: dvdm_…                  # written by set-context --token-stdin

Examples:
  $ pass show debvisor/prod | debvisor config set-context prod --server https://manager.example.net:8443 --ca-fingerprint 3F:2A:… --token-stdin
  $ debvisor config use-context prod
  $ debvisor config get-contexts`,
    );

  config
    .command('set-context <name>')
    .description('Add or change a context (the token only from standard input)')
    .option('--server <url>', 'the manager, https://host:port')
    .option('--ca-file <file>', 'trust this CA certificate (PEM) for the manager')
    .option('--ca-fingerprint <sha256>', "trust the manager's CA with this SHA-256 fingerprint")
    .option('--token-stdin', 'read the API token from standard input')
    .option('--use', 'make it the current context')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor config set-context lab --server https://127.0.0.1:8443 --ca-file /var/lib/debvisor-manager/pki/server-ca.crt
  $ printf %s "$TOKEN" | debvisor config set-context lab --token-stdin --use`,
    )
    .action(
      async (
        name: string,
        options: {
          server?: string;
          caFile?: string;
          caFingerprint?: string;
          tokenStdin?: boolean;
          use?: boolean;
        },
        command: Command,
      ) => {
        const path = fileOf(runtime, command);
        const file = readConfigFile(path);
        const existing = file.contexts.find((c) => c.name === name);
        const next: Record<string, unknown> = { ...existing, name };
        if (options.server) next.server = options.server;
        if (options.caFile) {
          next['ca-file'] = options.caFile;
          delete next['ca-fingerprint'];
        }
        if (options.caFingerprint) {
          next['ca-fingerprint'] = options.caFingerprint;
          delete next['ca-file'];
        }
        if (options.tokenStdin) next.token = await runtime.readStdin('API token');
        const parsed = contextSchema.safeParse(next);
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          throw CliError.usage(`context ${name}: ${issue.path.join('.')}: ${issue.message}`);
        }
        const contexts: CliContext[] = existing
          ? file.contexts.map((c) => (c.name === name ? parsed.data : c))
          : [...file.contexts, parsed.data];
        writeConfigFile(path, {
          ...file,
          contexts,
          'current-context':
            options.use || !file['current-context'] ? name : file['current-context'],
        });
        runtime.note(`context ${name} ${existing ? 'changed' : 'added'} in ${path}`);
      },
    );

  config
    .command('use-context <name>')
    .description('Make a context the current one')
    .addHelpText('after', '\nExample:\n  $ debvisor config use-context prod')
    .action((name: string, _options: unknown, command: Command) => {
      const path = fileOf(runtime, command);
      const file = readConfigFile(path);
      if (!file.contexts.some((c) => c.name === name))
        throw CliError.usage(`no context named ${JSON.stringify(name)} in ${path}`);
      writeConfigFile(path, { ...file, 'current-context': name });
      runtime.note(`current context: ${name}`);
    });

  config
    .command('delete-context <name>')
    .description('Remove a context and its token from the config file')
    .addHelpText('after', '\nExample:\n  $ debvisor config delete-context old-lab')
    .action((name: string, _options: unknown, command: Command) => {
      const path = fileOf(runtime, command);
      const file = readConfigFile(path);
      if (!file.contexts.some((c) => c.name === name))
        throw CliError.usage(`no context named ${JSON.stringify(name)} in ${path}`);
      writeConfigFile(path, {
        contexts: file.contexts.filter((c) => c.name !== name),
        ...(file['current-context'] === name ? {} : { 'current-context': file['current-context'] }),
      });
      runtime.note(`context ${name} deleted`);
    });

  config
    .command('get-contexts')
    .description('List the contexts (tokens are never printed)')
    .addHelpText('after', '\nExample:\n  $ debvisor config get-contexts -o json')
    .action((_options: unknown, command: Command) => {
      const file = readConfigFile(fileOf(runtime, command));
      const rows = file.contexts.map((c) => ({
        name: c.name,
        current: c.name === file['current-context'],
        server: c.server,
        trust: c['ca-file']
          ? `ca-file ${c['ca-file']}`
          : c['ca-fingerprint']
            ? `pinned ${c['ca-fingerprint']}`
            : 'system CAs',
        token: c.token ? 'set' : 'none',
      }));
      runtime.print(command, rows, () =>
        table(
          ['current', 'name', 'server', 'trust', 'token'],
          rows.map((r) => [r.current ? '*' : '', r.name, r.server, r.trust, r.token]),
        ),
      );
    });

  config
    .command('fingerprint <server>')
    .description(
      'Show the SHA-256 fingerprints of the certificates a manager presents (to pin its CA)',
    )
    .addHelpText(
      'after',
      '\nExample:\n  $ debvisor config fingerprint https://manager.example.net:8443',
    )
    .action(async (server: string, _options: unknown, command: Command) => {
      if (!/^https:\/\/[^/]+\/?$/.test(server))
        throw CliError.usage('the manager URL must be https://host[:port]');
      const chain = await presentedChain(server);
      runtime.print(command, chain, () =>
        table(
          ['subject', 'ca', 'sha256 fingerprint'],
          chain.map((c) => [c.subject, c.isCa, c.fingerprintSha256]),
        ),
      );
    });
}
