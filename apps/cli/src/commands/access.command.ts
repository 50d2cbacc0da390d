import type { Command } from 'commander';
import { CliError } from '../cli-error';
import type { CliRuntime } from '../cli-runtime';
import { unwrap } from '../http/api-client';
import { table } from '../output/render';

const ROLES = ['Audit', 'Manage', 'Admin'] as const;
const PRINCIPAL_TYPES = ['user', 'group', 'token'] as const;

function oneOf<T extends string>(what: string, allowed: readonly T[], value: string): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw CliError.usage(`${what} must be one of ${allowed.join(', ')}`);
}

/** `debvisor access …`: users, groups, the ACL and API tokens. */
export function registerAccess(program: Command, runtime: CliRuntime): void {
  const access = program
    .command('access')
    .description('Users, groups, the ACL and API tokens (needs access.audit / access.modify)')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor access users
  $ debvisor access groups
  $ debvisor access acl list
  $ debvisor access acl set /remotes/dc-east alice@local Manage
  $ debvisor access tokens create ci --owner ci-bot@local
  $ debvisor access tokens revoke 1a2b3c4d5e6f7a8b`,
    );

  access
    .command('users')
    .description('The users of every realm')
    .addHelpText('after', '\nExample:\n  $ debvisor access users -o json')
    .action(async (_options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const { items } = await unwrap(api.GET('/api/v1/access/users'));
      runtime.print(command, items, () =>
        table(
          ['id', 'realm', 'enabled', 'groups', 'tfa required', 'display name'],
          items.map((u) => [
            u.id,
            u.realm,
            u.enabled,
            u.groups.map((g) => g.id).join(','),
            u.requireTfa,
            u.displayName,
          ]),
        ),
      );
    });

  access
    .command('groups')
    .description('The groups and how many members they have')
    .addHelpText('after', '\nExample:\n  $ debvisor access groups')
    .action(async (_options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const { items } = await unwrap(api.GET('/api/v1/access/groups'));
      runtime.print(command, items, () =>
        table(
          ['id', 'members', 'tenant', 'tfa required', 'comment'],
          items.map((g) => [g.id, g.memberCount, g.tenant, g.requireTfa, g.comment]),
        ),
      );
    });

  const acl = access
    .command('acl')
    .description('Who holds which role where')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor access acl list
  $ debvisor access acl set /remotes/dc-east ops --type group Manage
  $ debvisor access acl remove /remotes/dc-east ops --type group`,
    );

  acl
    .command('list')
    .description('Every ACL entry')
    .addHelpText('after', '\nExample:\n  $ debvisor access acl list -o yaml')
    .action(async (_options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const { items } = await unwrap(api.GET('/api/v1/access/acl'));
      runtime.print(command, items, () =>
        table(
          ['path', 'type', 'principal', 'role', 'propagate'],
          items.map((e) => [e.path, e.principalType, e.principal, e.role, e.propagate]),
        ),
      );
    });

  acl
    .command('set <path> <principal> <role>')
    .description(`Give a principal a role (${ROLES.join(', ')}) on a path`)
    .option('--type <type>', PRINCIPAL_TYPES.join(' | '), 'user')
    .option('--no-propagate', 'the role holds on the path only, not below it')
    .addHelpText(
      'after',
      '\nExample:\n  $ debvisor access acl set /remotes/dc-east/vms alice@local Audit',
    )
    .action(
      async (
        path: string,
        principal: string,
        role: string,
        options: { type: string; propagate: boolean },
        command: Command,
      ) => {
        const api = await runtime.api(command);
        const body = {
          path,
          principal,
          principalType: oneOf('--type', PRINCIPAL_TYPES, options.type),
          role: oneOf('the role', ROLES, role),
          propagate: options.propagate,
        };
        await unwrap(api.PUT('/api/v1/access/acl', { body }));
        runtime.print(command, body, () => `${principal} holds ${role} on ${path}`);
      },
    );

  acl
    .command('remove <path> <principal>')
    .description("Remove a principal's entry on a path")
    .option('--type <type>', PRINCIPAL_TYPES.join(' | '), 'user')
    .addHelpText('after', '\nExample:\n  $ debvisor access acl remove /remotes/dc-east alice@local')
    .action(
      async (path: string, principal: string, options: { type: string }, command: Command) => {
        const api = await runtime.api(command);
        const body = {
          path,
          principal,
          principalType: oneOf('--type', PRINCIPAL_TYPES, options.type),
        };
        await unwrap(api.DELETE('/api/v1/access/acl', { body }));
        runtime.print(command, { removed: body }, () => `entry of ${principal} on ${path} removed`);
      },
    );

  const tokens = access
    .command('tokens')
    .description('API tokens of users and groups')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor access tokens list
  $ debvisor access tokens create backup --owner backup@local --expires 2027-06-30T00:00:00Z
  $ debvisor access tokens revoke 1a2b3c4d5e6f7a8b`,
    );

  tokens
    .command('list')
    .description('Every API token (never its secret)')
    .addHelpText('after', '\nExample:\n  $ debvisor access tokens list')
    .action(async (_options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const { items } = await unwrap(api.GET('/api/v1/access/tokens'));
      runtime.print(command, items, () =>
        table(
          ['id', 'name', 'owner', 'limited', 'expires', 'last used', 'revoked'],
          items.map((t) => [
            t.id,
            t.name,
            t.owner,
            t.limited,
            t.expiresAt,
            t.lastUsedAt,
            t.revokedAt,
          ]),
        ),
      );
    });

  tokens
    .command('create <name>')
    .description('Create a token; its secret is printed once, on standard output')
    .requiredOption('--owner <principal>', 'the user (name@realm) or group (--group) it acts as')
    .option('--group', 'the owner is a group')
    .option('--limited', 'the token holds only the ACL entries given to it, not its owner’s')
    .option('--expires <time>', 'when it stops working (RFC 3339)')
    .option('--comment <text>', 'what it is for', '')
    .addHelpText(
      'after',
      '\nExample:\n  # store the secret at once: it is not shown again\n  $ debvisor access tokens create ci --owner ci-bot@local -o json | jq -r .token > ci.token',
    )
    .action(
      async (
        name: string,
        options: {
          owner: string;
          group?: boolean;
          limited?: boolean;
          expires?: string;
          comment: string;
        },
        command: Command,
      ) => {
        const api = await runtime.api(command);
        const created = await unwrap(
          api.POST('/api/v1/access/tokens', {
            body: {
              name,
              owner: options.owner,
              ownerType: options.group ? 'group' : 'user',
              limited: options.limited ?? false,
              comment: options.comment,
              ...(options.expires ? { expiresAt: options.expires } : {}),
            },
          }),
        );
        runtime.print(
          command,
          created,
          () => `token ${created.id} (${created.name}) for ${created.owner}\n${created.token}`,
        );
      },
    );

  tokens
    .command('revoke <id>')
    .description('Revoke a token: it stops working at once')
    .addHelpText('after', '\nExample:\n  $ debvisor access tokens revoke 1a2b3c4d5e6f7a8b')
    .action(async (id: string, _options: unknown, command: Command) => {
      const api = await runtime.api(command);
      await unwrap(api.DELETE('/api/v1/access/tokens/{id}', { params: { path: { id } } }));
      runtime.print(command, { revoked: id }, () => `token ${id} revoked`);
    });
}
