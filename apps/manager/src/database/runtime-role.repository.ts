import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { Client } from 'pg';

/** The embedded PostgreSQL's runtime role: what the manager serves with. */
export const EMBEDDED_RUNTIME_ROLE = 'debvisor_app';

/** The tables whose rows the runtime role may only read and add, never change or remove. */
const APPEND_ONLY_TABLES = ['audit_log'];
/** Tables the runtime role only reads. */
const READ_ONLY_TABLES = ['typeorm_migrations'];

/** Who a connection acts as, and whether it could change the audit log despite the grants. */
export interface AuditProtection {
  readonly user: string;
  /** The audit log is guarded by the runtime role's grants as well as its trigger. */
  readonly byGrants: boolean;
  /** Why not, when not. */
  readonly reason?: string;
}

/**
 * Roles and grants of the manager's database, run with an owner or superuser connection: the
 * login role the manager serves with gets what it needs on every table — and on the audit log only
 * SELECT and INSERT — plus default privileges, so that tables of later migrations are covered too.
 */
export class RuntimeRoleRepository {
  constructor(private readonly adminUrl: string) {}

  /**
   * Creates the login role `role` if missing and (re)sets its password, as a SCRAM-SHA-256 verifier
   * computed here: the password itself never reaches the server or its log. The role gets no
   * attributes beyond LOGIN. Idempotent.
   */
  async ensureLoginRole(role: string, password: string): Promise<void> {
    const name = quoteIdent(role);
    await this.withClient(async (client) => {
      const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
      if (exists.rowCount === 0) {
        // Two managers starting at once on one server: the loser's CREATE fails; it then alters the role too.
        await client.query(`CREATE ROLE ${name} LOGIN`).catch((error: { code?: string }) => {
          if (error.code !== '42710') throw error; // duplicate_object
        });
      }
      await client.query(
        `ALTER ROLE ${name} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD ${quoteLiteral(scramSha256Verifier(password))}`,
      );
    });
  }

  /**
   * Grants `role` (a role other than the owner's) DML on every table of the public schema except
   * the audit log (SELECT, INSERT) and the migrations table (SELECT), use of the sequences, and the
   * same by default on what the owner creates later. Idempotent; run after the migrations.
   */
  async grantRuntime(role: string): Promise<void> {
    const name = quoteIdent(role);
    await this.withClient(async (client) => {
      const { rows } = await client.query<{ db: string; owner: string }>(
        'SELECT current_database() AS db, current_user AS owner',
      );
      const owner = quoteIdent(rows[0].owner);
      await client.query('BEGIN');
      await client.query(`GRANT CONNECT ON DATABASE ${quoteIdent(rows[0].db)} TO ${name}`);
      await client.query(`GRANT USAGE ON SCHEMA public TO ${name}`);
      await client.query(
        `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${name}`,
      );
      await client.query(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${name}`);
      for (const table of [...APPEND_ONLY_TABLES, ...READ_ONLY_TABLES]) {
        await client.query(`REVOKE ALL ON TABLE public.${quoteIdent(table)} FROM ${name}`);
      }
      for (const table of APPEND_ONLY_TABLES)
        await client.query(`GRANT SELECT, INSERT ON TABLE public.${quoteIdent(table)} TO ${name}`);
      for (const table of READ_ONLY_TABLES)
        await client.query(`GRANT SELECT ON TABLE public.${quoteIdent(table)} TO ${name}`);
      await client.query(
        `ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${name}`,
      );
      await client.query(
        `ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${name}`,
      );
      await client.query('COMMIT');
    });
  }

  /** The user of the admin connection (who owns what the migrations create). */
  async adminUser(): Promise<string> {
    return this.withClient(
      async (client) =>
        (await client.query<{ user: string }>('SELECT current_user AS user')).rows[0].user,
    );
  }

  /**
   * Looks at what `url` may do with the audit log: a superuser or the table's owner can get round
   * grants (and disable the trigger); a role holding UPDATE, DELETE or TRUNCATE on it is not held
   * back by grants.
   */
  static async auditProtection(url: string): Promise<AuditProtection> {
    const client = new Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
    await client.connect();
    try {
      const { rows } = await client.query<{
        user: string;
        superuser: boolean;
        owner: string;
        changes: boolean;
      }>(
        `SELECT current_user AS user,
                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
                pg_get_userbyid(c.relowner) AS owner,
                has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE') AS changes
           FROM pg_class c WHERE c.oid = 'public.audit_log'::regclass`,
      );
      const row = rows[0];
      if (row.superuser)
        return {
          user: row.user,
          byGrants: false,
          reason: `the manager connects as ${row.user}, a superuser`,
        };
      if (row.owner === row.user)
        return {
          user: row.user,
          byGrants: false,
          reason: `the manager connects as ${row.user}, the owner of the audit_log table`,
        };
      if (row.changes)
        return {
          user: row.user,
          byGrants: false,
          reason: `${row.user} holds UPDATE, DELETE or TRUNCATE on audit_log`,
        };
      return { user: row.user, byGrants: true };
    } finally {
      await client.end();
    }
  }

  private async withClient<T>(work: (client: Client) => Promise<T>): Promise<T> {
    const client = new Client({ connectionString: this.adminUrl, connectionTimeoutMillis: 10_000 });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }
}

/** A PostgreSQL identifier in double quotes. */
export function quoteIdent(name: string): string {
  if (name.includes('\u0000')) throw new Error('an identifier cannot hold NUL');
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(text: string): string {
  if (text.includes('\u0000')) throw new Error('a literal cannot hold NUL');
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802 / RFC 7677):
 * `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. ALTER ROLE … PASSWORD takes it as is.
 */
export function scramSha256Verifier(
  password: string,
  salt: Buffer = randomBytes(16),
  iterations = 4096,
): string {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
