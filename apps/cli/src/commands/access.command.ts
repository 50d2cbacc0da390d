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
  $ debvisor access users create alice@local --display-name Alice --password-stdin < pw
  $ debvisor access groups members ops alice@local bob@local
  $ debvisor access acl list
  $ debvisor access acl set /remotes/dc-east alice@local Manage
  $ debvisor access tokens create ci --owner ci-bot@local
  $ debvisor access tokens revoke 1a2b3c4d5e6f7a8b`,
    );

  registerUsers(access, runtime);
  registerGroups(access, runtime);

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

/** `name@realm` as the create route takes it. */
function splitUserId(id: string): { username: string; realm: string } {
  const at = id.lastIndexOf('@');
  if (at <= 0 || at === id.length - 1)
    throw CliError.usage(`a user is name@realm (e.g. alice@local), not "${id}"`);
  return { username: id.slice(0, at), realm: id.slice(at + 1) };
}

/** `debvisor access users …`: list (the default), create, set, password, delete. */
function registerUsers(access: Command, runtime: CliRuntime): void {
  const users = access
    .command('users')
    .description('The users of every realm (list, create, set, password, delete)')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor access users
  $ debvisor access users create alice@local --require-tfa --password-stdin < pw
  $ debvisor access users set alice@local --disable
  $ debvisor access users delete alice@local --yes`,
    );

  users
    .command('list', { isDefault: true })
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

  users
    .command('create <user>')
    .description('Create a user (name@realm); a local user gets its password from standard input')
    .option('--display-name <name>', 'the name people see')
    .option('--email <address>', 'an e-mail address')
    .option('--require-tfa', 'the user must log in with a second factor')
    .option('--disabled', 'create it disabled')
    .option('--password-stdin', 'read the password from standard input (local realm only)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ debvisor access users create alice@local --display-name Alice --password-stdin < pw\n  $ debvisor access users create bob@corp   # a directory user: logs in with the directory password',
    )
    .action(
      async (
        id: string,
        options: {
          displayName?: string;
          email?: string;
          requireTfa?: boolean;
          disabled?: boolean;
          passwordStdin?: boolean;
        },
        command: Command,
      ) => {
        const { username, realm } = splitUserId(id);
        const password = options.passwordStdin ? await runtime.readStdin('password') : undefined;
        const api = await runtime.api(command);
        const created = await unwrap(
          api.POST('/api/v1/access/users', {
            body: {
              username,
              realm,
              enabled: !options.disabled,
              requireTfa: options.requireTfa ?? false,
              ...(password === undefined ? {} : { password }),
              ...(options.displayName === undefined ? {} : { displayName: options.displayName }),
              ...(options.email === undefined ? {} : { email: options.email }),
            },
          }),
        );
        runtime.print(command, created, () => `user ${created.id} created`);
      },
    );

  users
    .command('set <user>')
    .description("Change a user's name, e-mail, second-factor rule or whether it may log in")
    .option('--display-name <name>', 'the name people see ("" clears it)')
    .option('--email <address>', 'an e-mail address ("" clears it)')
    .option('--enable', 'let the user log in again')
    .option('--disable', 'disable the user: ends its sessions and stops its API tokens')
    .option('--require-tfa', 'the user must log in with a second factor')
    .option('--no-require-tfa', 'a second factor is up to the user (and its groups)')
    .addHelpText('after', '\nExample:\n  $ debvisor access users set alice@local --disable')
    .action(
      async (
        id: string,
        options: {
          displayName?: string;
          email?: string;
          enable?: boolean;
          disable?: boolean;
          requireTfa?: boolean;
        },
        command: Command,
      ) => {
        if (options.enable && options.disable)
          throw CliError.usage('--enable and --disable exclude each other');
        const body = {
          ...(options.displayName === undefined
            ? {}
            : { displayName: options.displayName || null }),
          ...(options.email === undefined ? {} : { email: options.email || null }),
          ...(options.enable ? { enabled: true } : options.disable ? { enabled: false } : {}),
          ...(options.requireTfa === undefined ? {} : { requireTfa: options.requireTfa }),
        };
        if (Object.keys(body).length === 0)
          throw CliError.usage('nothing to change: give at least one option (see --help)');
        const api = await runtime.api(command);
        const updated = await unwrap(
          api.PUT('/api/v1/access/users/{user}', { params: { path: { user: id } }, body }),
        );
        runtime.print(command, updated, () => `user ${updated.id} changed`);
      },
    );

  users
    .command('password <user>')
    .description("Set a local user's password (read from standard input, never an argument)")
    .addHelpText(
      'after',
      '\nExample:\n  $ debvisor access users password alice@local   # asks without echo on a terminal',
    )
    .action(async (id: string, _options: unknown, command: Command) => {
      const password = await runtime.readStdin('new password');
      const api = await runtime.api(command);
      await unwrap(
        api.POST('/api/v1/access/users/{user}/password', {
          params: { path: { user: id } },
          body: { password },
        }),
      );
      runtime.print(command, { user: id, password: 'set' }, () => `password of ${id} set`);
    });

  users
    .command('delete <user>')
    .description('Delete a user; its ACL entries go with it')
    .option('-y, --yes', 'do not ask')
    .addHelpText('after', '\nExample:\n  $ debvisor access users delete alice@local --yes')
    .action(async (id: string, options: { yes?: boolean }, command: Command) => {
      await runtime.confirm(`Delete the user ${id}?`, options.yes);
      const api = await runtime.api(command);
      await unwrap(api.DELETE('/api/v1/access/users/{user}', { params: { path: { user: id } } }));
      runtime.print(command, { deleted: id }, () => `user ${id} deleted`);
    });
}

/** `debvisor access groups …`: list (the default), create, set, members, delete. */
function registerGroups(access: Command, runtime: CliRuntime): void {
  const groups = access
    .command('groups')
    .description('The groups (list, create, set, members, delete)')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor access groups
  $ debvisor access groups create ops --tenant
  $ debvisor access groups members ops alice@local bob@local`,
    );

  groups
    .command('list', { isDefault: true })
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

  groups
    .command('create <group>')
    .description('Create a group')
    .option('--comment <text>', 'what it is for', '')
    .option('--tenant', 'a tenant group: its grants hold only on the VMs it owns')
    .option('--require-tfa', 'every member must log in with a second factor')
    .addHelpText('after', '\nExample:\n  $ debvisor access groups create ops --comment "on call"')
    .action(
      async (
        id: string,
        options: { comment: string; tenant?: boolean; requireTfa?: boolean },
        command: Command,
      ) => {
        const api = await runtime.api(command);
        const created = await unwrap(
          api.POST('/api/v1/access/groups', {
            body: {
              id,
              comment: options.comment,
              tenant: options.tenant ?? false,
              requireTfa: options.requireTfa ?? false,
            },
          }),
        );
        runtime.print(command, created, () => `group ${created.id} created`);
      },
    );

  groups
    .command('set <group>')
    .description("Change a group's comment, tenancy or second-factor rule")
    .option('--comment <text>', 'what it is for')
    .option('--tenant', 'make it a tenant group')
    .option('--no-tenant', 'make it an ordinary group')
    .option('--require-tfa', 'every member must log in with a second factor')
    .option('--no-require-tfa', 'members need no second factor for this group')
    .addHelpText('after', '\nExample:\n  $ debvisor access groups set ops --require-tfa')
    .action(
      async (
        id: string,
        options: { comment?: string; tenant?: boolean; requireTfa?: boolean },
        command: Command,
      ) => {
        const body = {
          ...(options.comment === undefined ? {} : { comment: options.comment }),
          ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
          ...(options.requireTfa === undefined ? {} : { requireTfa: options.requireTfa }),
        };
        if (Object.keys(body).length === 0)
          throw CliError.usage('nothing to change: give at least one option (see --help)');
        const api = await runtime.api(command);
        const updated = await unwrap(
          api.PUT('/api/v1/access/groups/{group}', { params: { path: { group: id } }, body }),
        );
        runtime.print(command, updated, () => `group ${updated.id} changed`);
      },
    );

  groups
    .command('members <group> [users...]')
    .description(
      'Set the locally managed members (replaces them; none empties it); members a realm manages stay',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  $ debvisor access groups members ops alice@local bob@local\n  $ debvisor access groups members ops   # no local members any more',
    )
    .action(async (id: string, members: string[], _options: unknown, command: Command) => {
      const api = await runtime.api(command);
      const updated = await unwrap(
        api.PUT('/api/v1/access/groups/{group}/members', {
          params: { path: { group: id } },
          body: { users: members },
        }),
      );
      runtime.print(command, updated, () => `group ${id}: ${members.length} local member(s)`);
    });

  groups
    .command('delete <group>')
    .description('Delete a group; its ACL entries go with it')
    .option('-y, --yes', 'do not ask')
    .addHelpText('after', '\nExample:\n  $ debvisor access groups delete ops --yes')
    .action(async (id: string, options: { yes?: boolean }, command: Command) => {
      await runtime.confirm(`Delete the group ${id}?`, options.yes);
      const api = await runtime.api(command);
      await unwrap(
        api.DELETE('/api/v1/access/groups/{group}', { params: { path: { group: id } } }),
      );
      runtime.print(command, { deleted: id }, () => `group ${id} deleted`);
    });
}
