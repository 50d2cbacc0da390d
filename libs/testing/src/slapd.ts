import { createCa, issueCertificate } from '@debvisor/pki';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Attribute, Change, Client } from 'ldapts';
import { requireBinary } from './binaries';
import { writeTlsFiles } from './pki';
import { freePort } from './ports';
import { spawnManaged, type ManagedProcess } from './processes';
import { tempDir } from './temp';

const execFileAsync = promisify(execFile);

const SCHEMA_DIR = '/etc/ldap/schema';
const SCHEMAS = ['core', 'cosine', 'inetorgperson', 'nis'];
const MODULE_DIR = '/usr/lib/ldap';
const BASE_DN = 'dc=example,dc=test';

export interface SlapdUser {
  uid: string;
  password: string;
  /** Common name (the directory's display name); defaults to the uid. */
  cn?: string;
  mail?: string;
}

export interface SlapdOptions {
  /**
   * A soft size limit for everyone but the rootdn, like Active Directory's MaxPageSize: a plain
   * search stops after this many entries (sizeLimitExceeded), a paged search gets pages of at most
   * this many entries and still sees them all. Default: no limit.
   */
  sizeLimit?: number;
  /** Also append slapd's output to this file. */
  logFile?: string;
}

export interface SlapdInstance {
  /** ldap://127.0.0.1:<port> (plain; StartTLS offered). */
  readonly url: string;
  /** ldaps://127.0.0.1:<port>, certificate for 127.0.0.1 and localhost signed by `caPem`. */
  readonly ldapsUrl: string;
  /** The throw-away CA that signed the server certificate. */
  readonly caPem: string;
  /** dc=example,dc=test */
  readonly baseDn: string;
  /** ou=people,<baseDn>: inetOrgPerson entries named uid=<uid>. */
  readonly usersDn: string;
  /** ou=groups,<baseDn>: groupOfNames entries named cn=<cn>, member = user DNs. */
  readonly groupsDn: string;
  /** The read-only service account: reads users and groups (as any signed-in user does), never a userPassword. */
  readonly bindDn: string;
  readonly bindPassword: string;
  /** The rootdn (no access control applies to it). */
  readonly adminDn: string;
  readonly adminPassword: string;
  readonly process: ManagedProcess;
  userDn(uid: string): string;
  groupDn(cn: string): string;
  /** Adds a user; answers its DN. */
  addUser(user: SlapdUser): Promise<string>;
  setPassword(uid: string, password: string): Promise<void>;
  /** Deletes the user entry (group memberships that name it are left dangling, as without refint). */
  deleteUser(uid: string): Promise<void>;
  /** Adds a groupOfNames; answers its DN. */
  addGroup(cn: string, memberUids: string[]): Promise<string>;
  setGroupMembers(cn: string, memberUids: string[]): Promise<void>;
  /** Stops slapd and removes the directory the harness created for it. */
  stop(): Promise<void>;
}

/**
 * A throw-away OpenLDAP slapd (Debian package slapd) with an mdb database on free loopback ports,
 * serving ldap:// (with StartTLS) and ldaps://, answering binds before this resolves.
 */
export async function startSlapd(options: SlapdOptions = {}): Promise<SlapdInstance> {
  const slapd = requireBinary('slapd', 'slapd');
  const slapadd = requireBinary('slapadd', 'slapd');
  for (const schema of SCHEMAS) {
    if (!existsSync(join(SCHEMA_DIR, `${schema}.schema`))) {
      throw new Error(
        `${SCHEMA_DIR}/${schema}.schema is missing: install the Debian package slapd (apt-get install slapd)`,
      );
    }
  }
  if (
    options.sizeLimit !== undefined &&
    !(Number.isInteger(options.sizeLimit) && options.sizeLimit > 0)
  ) {
    throw new Error(`sizeLimit must be a positive integer, not ${options.sizeLimit}`);
  }

  const dir = tempDir('debvisor-slapd-');
  try {
    const usersDn = `ou=people,${BASE_DN}`;
    const groupsDn = `ou=groups,${BASE_DN}`;
    const adminDn = `cn=admin,${BASE_DN}`;
    const bindDn = `cn=debvisor-reader,ou=services,${BASE_DN}`;
    const adminPassword = randomBytes(12).toString('hex');
    const bindPassword = randomBytes(12).toString('hex');

    const ca = await createCa('DebVisor test slapd CA');
    const server = await issueCertificate(ca, {
      commonName: 'slapd',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    const tls = writeTlsFiles(join(dir, 'tls'), 'slapd', server, ca.certPem);

    const dataDir = join(dir, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    const configFile = join(dir, 'slapd.conf');
    writeFileSync(
      configFile,
      slapdConf({
        dir,
        dataDir,
        tls,
        adminDn,
        adminPassword,
        bindDn,
        sizeLimit: options.sizeLimit,
      }),
      { mode: 0o600 },
    );
    const baseLdif = join(dir, 'base.ldif');
    writeFileSync(baseLdif, baseEntries({ usersDn, groupsDn, bindDn, bindPassword }), {
      mode: 0o600,
    });
    await execFileAsync(slapadd, ['-f', configFile, '-l', baseLdif], {
      timeout: 30_000,
      env: slapdEnv(),
    }).catch((error: Error & { stderr?: string }) => {
      throw new Error(`slapadd failed: ${error.message}\n${error.stderr ?? ''}`);
    });

    const port = await freePort();
    const ldapsPort = await freePort();
    const url = `ldap://127.0.0.1:${port}`;
    const ldapsUrl = `ldaps://127.0.0.1:${ldapsPort}`;
    const child = spawnManaged(
      'slapd',
      slapd,
      ['-d', 'none', '-f', configFile, '-h', `${url}/ ${ldapsUrl}/`],
      {
        env: slapdEnv(),
        logFile: options.logFile,
      },
    );

    const admin = async <T>(work: (client: Client) => Promise<T>): Promise<T> => {
      const client = new Client({ url, timeout: 10_000, connectTimeout: 5_000 });
      try {
        await client.bind(adminDn, adminPassword);
        return await work(client);
      } finally {
        await client.unbind().catch(() => undefined);
      }
    };
    try {
      await waitForSlapd(child, url, ldapsUrl, ca.certPem, adminDn, adminPassword);
    } catch (error) {
      await child.kill();
      throw error;
    }

    const userDn = (uid: string) => `uid=${escapeDnValue(uid)},${usersDn}`;
    const groupDn = (cn: string) => `cn=${escapeDnValue(cn)},${groupsDn}`;
    // groupOfNames requires a member: an empty group names the empty DN, which is nobody.
    const members = (uids: string[]) => (uids.length ? uids.map(userDn) : ['']);

    return {
      url,
      ldapsUrl,
      caPem: ca.certPem,
      baseDn: BASE_DN,
      usersDn,
      groupsDn,
      bindDn,
      bindPassword,
      adminDn,
      adminPassword,
      process: child,
      userDn,
      groupDn,
      async addUser(user) {
        const dn = userDn(user.uid);
        const cn = user.cn ?? user.uid;
        await admin((client) =>
          client.add(dn, {
            objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'],
            uid: user.uid,
            cn,
            sn: cn,
            userPassword: hashPassword(user.password),
            ...(user.mail ? { mail: user.mail } : {}),
          }),
        );
        return dn;
      },
      async setPassword(uid, password) {
        await admin((client) =>
          client.modify(
            userDn(uid),
            new Change({
              operation: 'replace',
              modification: new Attribute({
                type: 'userPassword',
                values: [hashPassword(password)],
              }),
            }),
          ),
        );
      },
      async deleteUser(uid) {
        await admin((client) => client.del(userDn(uid)));
      },
      async addGroup(cn, memberUids) {
        const dn = groupDn(cn);
        await admin((client) =>
          client.add(dn, { objectClass: ['top', 'groupOfNames'], cn, member: members(memberUids) }),
        );
        return dn;
      },
      async setGroupMembers(cn, memberUids) {
        await admin((client) =>
          client.modify(
            groupDn(cn),
            new Change({
              operation: 'replace',
              modification: new Attribute({ type: 'member', values: members(memberUids) }),
            }),
          ),
        );
      },
      async stop() {
        await child.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** slapd must not pick up the machine's ldap.conf/ldaprc (client settings such as TLS_REQCERT). */
function slapdEnv(): NodeJS.ProcessEnv {
  return { ...process.env, LDAPNOINIT: '1' };
}

interface ConfOptions {
  dir: string;
  dataDir: string;
  tls: { cert: string; key: string; ca: string };
  adminDn: string;
  adminPassword: string;
  bindDn: string;
  sizeLimit: number | undefined;
}

function slapdConf(o: ConfOptions): string {
  const q = (value: string) => {
    if (/["\\\n]/.test(value))
      throw new Error(`cannot quote ${JSON.stringify(value)} for slapd.conf`);
    return `"${value}"`;
  };
  // Debian builds the backends as modules; other builds may have them built in.
  const modules = existsSync(join(MODULE_DIR, 'back_mdb.so'))
    ? [`modulepath ${q(MODULE_DIR)}`, 'moduleload back_mdb']
    : [];
  return [
    ...SCHEMAS.map((schema) => `include ${q(join(SCHEMA_DIR, `${schema}.schema`))}`),
    `pidfile ${q(join(o.dir, 'slapd.pid'))}`,
    `argsfile ${q(join(o.dir, 'slapd.args'))}`,
    ...modules,
    `TLSCACertificateFile ${q(o.tls.ca)}`,
    `TLSCertificateFile ${q(o.tls.cert)}`,
    `TLSCertificateKeyFile ${q(o.tls.key)}`,
    'TLSProtocolMin 3.3',
    '',
    'database mdb',
    'maxsize 67108864',
    `suffix ${q(BASE_DN)}`,
    `rootdn ${q(o.adminDn)}`,
    `rootpw ${hashPassword(o.adminPassword)}`,
    `directory ${q(o.dataDir)}`,
    'index objectClass eq',
    'index uid,cn,member eq',
    ...(o.sizeLimit !== undefined
      ? [`limits * size.soft=${o.sizeLimit} size.hard=unlimited size.prtotal=unlimited`]
      : []),
    // Passwords: a user may bind with (and change) their own; nobody else reads any.
    'access to attrs=userPassword',
    '  by self write',
    '  by anonymous auth',
    '  by * none',
    // Everything else: the service account and signed-in users read, anonymous clients see nothing.
    `access to dn.subtree=${q(BASE_DN)}`,
    `  by dn.exact=${q(o.bindDn)} read`,
    '  by users read',
    '  by * none',
    '',
  ].join('\n');
}

function baseEntries(o: {
  usersDn: string;
  groupsDn: string;
  bindDn: string;
  bindPassword: string;
}): string {
  return [
    `dn: ${BASE_DN}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: DebVisor test directory`,
    `dn: ${o.usersDn}\nobjectClass: top\nobjectClass: organizationalUnit\nou: people`,
    `dn: ${o.groupsDn}\nobjectClass: top\nobjectClass: organizationalUnit\nou: groups`,
    `dn: ou=services,${BASE_DN}\nobjectClass: top\nobjectClass: organizationalUnit\nou: services`,
    `dn: ${o.bindDn}\nobjectClass: top\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: debvisor-reader\nuserPassword: ${hashPassword(o.bindPassword)}`,
    '',
  ].join('\n\n');
}

/** {SSHA}: salted SHA-1, the scheme slapd checks without any module. */
function hashPassword(password: string): string {
  const salt = randomBytes(8);
  const digest = createHash('sha1').update(password, 'utf8').update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`;
}

/** An attribute value escaped for use in a DN (RFC 4514). */
function escapeDnValue(value: string): string {
  return value
    .replace(/[\\,+"<>;=]/g, (c) => `\\${c}`)
    .replace(/\0/g, '\\00')
    .replace(/^([ #])/, '\\$1')
    .replace(/ $/, '\\ ');
}

async function waitForSlapd(
  child: ManagedProcess,
  url: string,
  ldapsUrl: string,
  caPem: string,
  adminDn: string,
  adminPassword: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (const target of [url, ldapsUrl]) {
    for (;;) {
      if (child.child.exitCode !== null)
        throw new Error(
          `slapd exited early (code ${child.child.exitCode}):\n${child.output().slice(-4000)}`,
        );
      const client = new Client({
        url: target,
        timeout: 1_000,
        connectTimeout: 1_000,
        // ldapts speaks TLS from the start whenever tlsOptions are given, even for ldap://.
        tlsOptions: target.startsWith('ldaps:')
          ? { ca: [caPem], minVersion: 'TLSv1.2' }
          : undefined,
      });
      try {
        await client.bind(adminDn, adminPassword);
        break;
      } catch (error) {
        last = (error as Error).message;
      } finally {
        await client.unbind().catch(() => undefined);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `slapd at ${target} did not answer within ${timeoutMs} ms (${last}):\n${child.output().slice(-4000)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
