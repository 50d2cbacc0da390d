import { Injectable } from '@nestjs/common';
import {
  AndFilter,
  Client,
  ConfidentialityRequiredError,
  EqualityFilter,
  FilterParser,
  InappropriateAuthError,
  InvalidCredentialsError,
  NoSuchObjectError,
  ResultCodeError,
  StrongAuthRequiredError,
  type Entry,
  type Filter,
} from 'ldapts';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { LdapRealmSettings } from './ldap-settings';

export interface DirectoryUser {
  /** The value of the realm's username attribute, as the directory spells it. */
  username: string;
  dn: string;
  displayName: string | null;
  email: string | null;
}

export interface DirectoryGroup {
  name: string;
  dn: string;
  /** Usernames of the group's members that are users of the realm (other members are left out). */
  memberUsernames: string[];
}

const PAGE_SIZE = 500;
/** No username or password of a real directory is longer; longer input is refused without a round trip. */
const MAX_CREDENTIAL_LENGTH = 1024;

/** Errors from node's TLS layer when the server's certificate does not verify. */
const CERTIFICATE_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * The directory of an LDAP / Active Directory realm: finds users, checks their passwords with a
 * bind, and reads every user and group for synchronisation. One connection per call, always closed.
 * The server's certificate is always verified (against `caPem` when set, else the system CAs).
 */
@Injectable()
export class LdapDirectoryRepository {
  /** The user whose username attribute equals `username` (exactly one entry), or null. */
  async findUser(
    settings: LdapRealmSettings,
    bindPassword: string | null,
    username: string,
  ): Promise<DirectoryUser | null> {
    if (username.length === 0 || username.length > MAX_CREDENTIAL_LENGTH) return null;
    return this.withServiceAccount(settings, bindPassword, async (client) => {
      // The value goes into the request as data (an equality assertion), never into filter text.
      const filter = new AndFilter({
        filters: [
          parseFilter(settings.userFilter),
          new EqualityFilter({ attribute: settings.usernameAttribute, value: username }),
        ],
      });
      const { searchEntries } = await this.search(
        client,
        settings.userBaseDn,
        filter,
        userAttributes(settings),
        { sizeLimit: 2 },
        'user base DN',
      );
      // Two entries answering to one name: refuse rather than guess which one is meant.
      if (searchEntries.length !== 1) return null;
      return toUser(settings, searchEntries[0]);
    });
  }

  /**
   * True when a simple bind as `userDn` with `password` succeeds, false when the directory refuses
   * the credentials. An empty password (or DN) never reaches the server: LDAP treats it as an
   * unauthenticated bind, which servers accept without checking anything.
   */
  async bindAsUser(
    settings: LdapRealmSettings,
    userDn: string,
    password: string,
  ): Promise<boolean> {
    if (userDn.trim() === '' || password === '' || password.length > MAX_CREDENTIAL_LENGTH)
      return false;
    return this.withConnection(settings, async (client) => {
      try {
        await client.bind(userDn, password);
        return true;
      } catch (error) {
        if (
          error instanceof InvalidCredentialsError ||
          error instanceof InappropriateAuthError ||
          error instanceof NoSuchObjectError
        )
          return false;
        throw error;
      }
    });
  }

  /** Every user and group of the realm (paged searches); group members resolved to usernames. */
  async fetchDirectory(
    settings: LdapRealmSettings,
    bindPassword: string | null,
  ): Promise<{ users: DirectoryUser[]; groups: DirectoryGroup[] }> {
    return this.withServiceAccount(settings, bindPassword, async (client) => {
      const userEntries = await this.search(
        client,
        settings.userBaseDn,
        parseFilter(settings.userFilter),
        userAttributes(settings),
        { paged: true },
        'user base DN',
      );
      const users = uniqueUsers(
        userEntries.searchEntries
          .map((entry) => toUser(settings, entry))
          .filter((user) => user !== null),
      );
      const usernameByDn = new Map(users.map((user) => [normalizeDn(user.dn), user.username]));

      const groupEntries = await this.search(
        client,
        settings.groupBaseDn,
        parseFilter(settings.groupFilter),
        [settings.groupNameAttribute, settings.groupMemberAttribute],
        { paged: true },
        'group base DN',
      );
      const groups: DirectoryGroup[] = [];
      for (const entry of groupEntries.searchEntries) {
        const name = firstValue(entry, settings.groupNameAttribute);
        if (!name) continue;
        const members = new Set<string>();
        for (const memberDn of allValues(entry, settings.groupMemberAttribute)) {
          const username = usernameByDn.get(normalizeDn(memberDn));
          if (username !== undefined) members.add(username);
        }
        groups.push({ name, dn: entry.dn, memberUsernames: [...members].sort() });
      }
      groups.sort((a, b) => compare(a.name, b.name) || compare(a.dn, b.dn));
      return { users: users.sort((a, b) => compare(a.username, b.username)), groups };
    });
  }

  /**
   * The names of the realm's groups that list `userDn` as a member (one search with the service
   * account), so that a login can refresh a user's groups without a full sync. The DN goes into the
   * request as data (an equality assertion on the member attribute), never into filter text.
   */
  async groupsOfUser(
    settings: LdapRealmSettings,
    bindPassword: string | null,
    userDn: string,
  ): Promise<string[]> {
    if (userDn.trim() === '' || userDn.length > MAX_CREDENTIAL_LENGTH) return [];
    return this.withServiceAccount(settings, bindPassword, async (client) => {
      const filter = new AndFilter({
        filters: [
          parseFilter(settings.groupFilter),
          new EqualityFilter({ attribute: settings.groupMemberAttribute, value: userDn }),
        ],
      });
      const { searchEntries } = await this.search(
        client,
        settings.groupBaseDn,
        filter,
        [settings.groupNameAttribute],
        { paged: true },
        'group base DN',
      );
      const names = new Set<string>();
      for (const entry of searchEntries) {
        const name = firstValue(entry, settings.groupNameAttribute);
        if (name) names.add(name);
      }
      return [...names].sort(compare);
    });
  }

  /** Connects (TLS as configured), binds as the service account and reads both base DNs; throws RealmUnavailable naming what failed. */
  async testConnection(settings: LdapRealmSettings, bindPassword: string | null): Promise<void> {
    await this.withServiceAccount(settings, bindPassword, async (client) => {
      await this.search(
        client,
        settings.userBaseDn,
        parseFilter('(objectClass=*)'),
        ['1.1'],
        { scope: 'base' },
        'user base DN',
      );
      await this.search(
        client,
        settings.groupBaseDn,
        parseFilter('(objectClass=*)'),
        ['1.1'],
        { scope: 'base' },
        'group base DN',
      );
    });
  }

  private async search(
    client: Client,
    baseDn: string,
    filter: Filter,
    attributes: string[],
    options: { sizeLimit?: number; paged?: boolean; scope?: 'base' | 'sub' },
    what: string,
  ): Promise<{ searchEntries: Entry[] }> {
    try {
      return await client.search(baseDn, {
        scope: options.scope ?? 'sub',
        filter,
        attributes,
        sizeLimit: options.sizeLimit ?? 0,
        paged: options.paged ? { pageSize: PAGE_SIZE } : false,
      });
    } catch (error) {
      if (error instanceof NoSuchObjectError) {
        throw new DomainError(
          ErrorCode.RealmUnavailable,
          `The directory has no ${what} ${baseDn} (or the service account may not read it)`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  private async withServiceAccount<T>(
    settings: LdapRealmSettings,
    bindPassword: string | null,
    work: (client: Client) => Promise<T>,
  ): Promise<T> {
    return this.withConnection(settings, async (client) => {
      if (settings.bindDn) {
        if (!bindPassword) {
          throw new DomainError(
            ErrorCode.RealmUnavailable,
            'The realm has a bind DN but no bind password; set the service account password',
          );
        }
        try {
          await client.bind(settings.bindDn, bindPassword);
        } catch (error) {
          if (
            error instanceof InvalidCredentialsError ||
            error instanceof InappropriateAuthError ||
            error instanceof NoSuchObjectError
          ) {
            throw new DomainError(
              ErrorCode.RealmUnavailable,
              `The directory server at ${settings.url} rejected the service account ${settings.bindDn}: check the bind DN and password`,
              { cause: error },
            );
          }
          throw error;
        }
      }
      return work(client);
    });
  }

  /** Opens a connection (with TLS as configured), runs `work`, always closes it; maps failures to RealmUnavailable. */
  private async withConnection<T>(
    settings: LdapRealmSettings,
    work: (client: Client) => Promise<T>,
  ): Promise<T> {
    const url = new URL(settings.url);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const tlsOptions: ConnectionOptions = {
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      ...(settings.caPem ? { ca: [settings.caPem] } : {}),
    };
    const client = new Client({
      url: settings.url,
      timeout: settings.timeoutMs,
      connectTimeout: settings.timeoutMs,
      // ldapts speaks TLS from the first byte whenever tlsOptions are set, so only for ldaps://.
      tlsOptions: url.protocol === 'ldaps:' ? tlsOptions : undefined,
    });
    try {
      if (settings.startTls) {
        // The handshake itself has no timeout in ldapts: bound it here.
        await withDeadline(
          client.startTLS({ ...tlsOptions, host, ...(isIP(host) ? {} : { servername: host }) }),
          settings.timeoutMs,
          'StartTLS handshake timed out',
        );
      }
      return await work(client);
    } catch (error) {
      throw unavailable(settings, error);
    } finally {
      await withDeadline(client.unbind(), 1000, 'unbind timed out').catch(() => undefined);
    }
  }
}

function parseFilter(text: string): Filter {
  try {
    return FilterParser.parseString(text);
  } catch (error) {
    throw new DomainError(
      ErrorCode.RealmUnavailable,
      `The realm's filter ${text} is not a valid LDAP filter`,
      { cause: error },
    );
  }
}

function userAttributes(settings: LdapRealmSettings): string[] {
  return [settings.usernameAttribute, settings.displayNameAttribute, settings.emailAttribute];
}

function toUser(settings: LdapRealmSettings, entry: Entry): DirectoryUser | null {
  const username = firstValue(entry, settings.usernameAttribute);
  if (!username) return null;
  return {
    username,
    dn: entry.dn,
    displayName: firstValue(entry, settings.displayNameAttribute),
    email: firstValue(entry, settings.emailAttribute),
  };
}

/** Usernames compare case-insensitively in directories (caseIgnoreMatch): two entries sharing one are both left out, as findUser refuses them. */
function uniqueUsers(users: DirectoryUser[]): DirectoryUser[] {
  const count = new Map<string, number>();
  for (const user of users)
    count.set(user.username.toLowerCase(), (count.get(user.username.toLowerCase()) ?? 0) + 1);
  return users.filter((user) => count.get(user.username.toLowerCase()) === 1);
}

/** The values of `attribute` (matched case-insensitively, as servers may answer in their own spelling). */
function allValues(entry: Entry, attribute: string): string[] {
  const wanted = attribute.toLowerCase();
  for (const [key, value] of Object.entries(entry)) {
    if (key === 'dn' || key.toLowerCase() !== wanted) continue;
    const values = Array.isArray(value) ? value : [value];
    return values.map((v) => (Buffer.isBuffer(v) ? v.toString('utf8') : v)).filter((v) => v !== '');
  }
  return [];
}

function firstValue(entry: Entry, attribute: string): string | null {
  return allValues(entry, attribute)[0] ?? null;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A DN in a form that compares equal for the same entry however the server spelled it: attribute
 * types and values lower-cased, escapes decoded, spaces around separators dropped, multi-valued
 * RDNs sorted. (groupOfUniqueNames values may end in #'…'B, an optional unique id, which goes.)
 */
function normalizeDn(dn: string): string {
  const text = dn.replace(/#'[01]*'B$/, '');
  const rdns: string[][] = [[]];
  let current = '';
  let escaped = false;
  let inQuotes = false;
  const pushAva = () => {
    rdns[rdns.length - 1].push(normalizeAva(current));
    current = '';
  };
  for (const c of text) {
    if (escaped) {
      current += `\\${c}`;
      escaped = false;
    } else if (c === '\\') {
      escaped = true;
    } else if (c === '"') {
      inQuotes = !inQuotes;
      current += c;
    } else if (!inQuotes && (c === ',' || c === ';')) {
      pushAva();
      rdns.push([]);
    } else if (!inQuotes && c === '+') {
      pushAva();
    } else {
      current += c;
    }
  }
  pushAva();
  return rdns.map((avas) => avas.sort().join('+')).join(',');
}

function normalizeAva(ava: string): string {
  const eq = ava.indexOf('=');
  if (eq < 0) return ava.trim().toLowerCase();
  const type = ava.slice(0, eq).trim().toLowerCase();
  let raw = ava.slice(eq + 1).trim();
  if (raw.startsWith('"') && raw.endsWith('"') && raw.length >= 2) raw = raw.slice(1, -1);
  // Decode \XX hex pairs (as UTF-8 bytes) and \c escapes.
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === '\\' && /^[0-9a-fA-F]{2}$/.test(raw.slice(i + 1, i + 3))) {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (raw[i] === '\\' && i + 1 < raw.length) {
      bytes.push(...Buffer.from(raw[i + 1], 'utf8'));
      i += 1;
    } else {
      bytes.push(...Buffer.from(raw[i], 'utf8'));
    }
  }
  return `${type}=${Buffer.from(bytes).toString('utf8').toLowerCase()}`;
}

function withDeadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Any failure to talk to the directory, as an operator-facing RealmUnavailable (never holding a secret). */
function unavailable(settings: LdapRealmSettings, error: unknown): DomainError {
  if (error instanceof DomainError) return error;
  const where = `the directory server at ${settings.url}`;
  const fail = (message: string) =>
    new DomainError(ErrorCode.RealmUnavailable, message, { cause: error });
  if (error instanceof ConfidentialityRequiredError || error instanceof StrongAuthRequiredError) {
    return fail(`${capitalize(where)} requires an encrypted connection: use ldaps:// or StartTLS`);
  }
  if (error instanceof ResultCodeError) {
    return fail(
      `${capitalize(where)} answered ${error.name.replace(/Error$/, '')} (LDAP result ${error.code})`,
    );
  }
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof code === 'string' && CERTIFICATE_ERRORS.has(code)) {
    return fail(
      `TLS with ${where} failed: its certificate is not trusted (${code})${settings.caPem ? ': it does not chain to the configured CA certificate' : ''}`,
    );
  }
  if (code === 'ECONNREFUSED') return fail(`Cannot connect to ${where}: connection refused`);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return fail(`Cannot connect to ${where}: the host name does not resolve`);
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH')
    return fail(`Cannot connect to ${where}: host unreachable`);
  if (/timed? ?out/i.test(message) || code === 'ETIMEDOUT') {
    return fail(`${capitalize(where)} did not answer within ${settings.timeoutMs} ms`);
  }
  if (/TLS|SSL|secure/i.test(message) || (typeof code === 'string' && code.startsWith('ERR_SSL'))) {
    return fail(
      `TLS with ${where} failed (${typeof code === 'string' ? code : 'handshake failed'})`,
    );
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || /closed|socket/i.test(message)) {
    return fail(`The connection to ${where} was closed unexpectedly`);
  }
  return fail(`Cannot use ${where}`);
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
