import type { Schemas } from '../api/client';

/**
 * The realm form (LDAP and OpenID Connect): its fields as text, prefilled from a realm, and the
 * create and update bodies. Empty optional fields are left out so that the manager's defaults
 * apply; the manager validates the settings (its messages name the field).
 */

export type Realm = Schemas['RealmDto_Output'];
export type DirectoryType = 'ldap' | 'openid';

export interface MappingRow {
  pattern: string;
  group: string;
  tenant: boolean;
}

export interface LdapFields {
  url: string;
  startTls: boolean;
  caPem: string;
  bindDn: string;
  userBaseDn: string;
  userFilter: string;
  usernameAttribute: string;
  displayNameAttribute: string;
  emailAttribute: string;
  groupBaseDn: string;
  groupFilter: string;
  groupNameAttribute: string;
  groupMemberAttribute: string;
  timeoutMs: string;
}

export interface OidcFields {
  issuerUrl: string;
  clientId: string;
  /** Space-separated. */
  scopes: string;
  usernameClaim: string;
  groupsClaim: string;
  /** Space- or comma-separated. */
  audiences: string;
  caPem: string;
  timeoutMs: string;
}

export interface RealmForm {
  id: string;
  type: DirectoryType;
  comment: string;
  requireTfa: boolean;
  /** LDAP bind password or OpenID Connect client secret; empty: unchanged (on edit). */
  secret: string;
  /** LDAP on edit: drop the stored bind password (bind anonymously). */
  removeSecret: boolean;
  /** Minutes; empty: sync only on demand. */
  syncIntervalMinutes: string;
  groupMappings: MappingRow[];
  addAnyway: boolean;
  ldap: LdapFields;
  openid: OidcFields;
}

/** The manager's defaults, shown in the form so that the operator sees what applies. */
export const LDAP_DEFAULTS: LdapFields = {
  url: '',
  startTls: false,
  caPem: '',
  bindDn: '',
  userBaseDn: '',
  userFilter: '(objectClass=inetOrgPerson)',
  usernameAttribute: 'uid',
  displayNameAttribute: 'cn',
  emailAttribute: 'mail',
  groupBaseDn: '',
  groupFilter: '(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))',
  groupNameAttribute: 'cn',
  groupMemberAttribute: 'member',
  timeoutMs: '5000',
};

export const OIDC_DEFAULTS: OidcFields = {
  issuerUrl: '',
  clientId: '',
  scopes: 'openid profile email',
  usernameClaim: 'preferred_username',
  groupsClaim: 'groups',
  audiences: '',
  caPem: '',
  timeoutMs: '5000',
};

export function emptyRealmForm(type: DirectoryType): RealmForm {
  return {
    id: '',
    type,
    comment: '',
    requireTfa: false,
    secret: '',
    removeSecret: false,
    syncIntervalMinutes: '',
    groupMappings: [],
    addAnyway: false,
    ldap: { ...LDAP_DEFAULTS },
    openid: { ...OIDC_DEFAULTS },
  };
}

const text = (value: unknown, fallback: string) =>
  typeof value === 'string' ? value : typeof value === 'number' ? String(value) : fallback;
const list = (value: unknown, fallback: string) =>
  Array.isArray(value) ? value.filter((v) => typeof v === 'string').join(' ') : fallback;

/** The form of an existing LDAP or OpenID Connect realm (never its secret: the manager does not answer it). */
export function realmFormFrom(realm: Realm): RealmForm {
  const type: DirectoryType = realm.type === 'openid' ? 'openid' : 'ldap';
  const s = realm.settings;
  const form = emptyRealmForm(type);
  form.id = realm.id;
  form.comment = realm.comment;
  form.requireTfa = realm.requireTfa;
  form.syncIntervalMinutes =
    realm.syncIntervalMinutes === null ? '' : String(realm.syncIntervalMinutes);
  form.groupMappings = realm.groupMappings.map((m) => ({
    pattern: m.pattern,
    group: m.group ?? '',
    tenant: m.tenant ?? false,
  }));
  if (type === 'ldap') {
    const fields = { ...LDAP_DEFAULTS };
    for (const key of Object.keys(LDAP_DEFAULTS) as (keyof LdapFields)[]) {
      if (key === 'startTls') fields.startTls = s.startTls === true;
      else
        fields[key] = text(s[key], key === 'caPem' || key === 'bindDn' ? '' : LDAP_DEFAULTS[key]);
    }
    form.ldap = fields;
  } else {
    form.openid = {
      issuerUrl: text(s.issuerUrl, ''),
      clientId: text(s.clientId, ''),
      scopes: list(s.scopes, OIDC_DEFAULTS.scopes),
      usernameClaim: text(s.usernameClaim, OIDC_DEFAULTS.usernameClaim),
      groupsClaim: text(s.groupsClaim, OIDC_DEFAULTS.groupsClaim),
      audiences: list(s.audiences, ''),
      caPem: text(s.caPem, ''),
      timeoutMs: text(s.timeoutMs, OIDC_DEFAULTS.timeoutMs),
    };
  }
  return form;
}

const words = (value: string) => value.split(/[\s,]+/).filter(Boolean);

/** The `settings` object of the realm's type; empty optional fields left out. */
export function realmSettings(form: RealmForm): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  const put = (key: string, value: string) => {
    if (value.trim()) settings[key] = value.trim();
  };
  if (form.type === 'ldap') {
    const l = form.ldap;
    put('url', l.url);
    settings.startTls = l.startTls;
    put('caPem', l.caPem);
    put('bindDn', l.bindDn);
    put('userBaseDn', l.userBaseDn);
    put('userFilter', l.userFilter);
    put('usernameAttribute', l.usernameAttribute);
    put('displayNameAttribute', l.displayNameAttribute);
    put('emailAttribute', l.emailAttribute);
    put('groupBaseDn', l.groupBaseDn);
    put('groupFilter', l.groupFilter);
    put('groupNameAttribute', l.groupNameAttribute);
    put('groupMemberAttribute', l.groupMemberAttribute);
    if (l.timeoutMs.trim()) settings.timeoutMs = Number(l.timeoutMs);
  } else {
    const o = form.openid;
    put('issuerUrl', o.issuerUrl);
    put('clientId', o.clientId);
    if (words(o.scopes).length > 0) settings.scopes = words(o.scopes);
    put('usernameClaim', o.usernameClaim);
    put('groupsClaim', o.groupsClaim);
    if (words(o.audiences).length > 0) settings.audiences = words(o.audiences);
    put('caPem', o.caPem);
    if (o.timeoutMs.trim()) settings.timeoutMs = Number(o.timeoutMs);
  }
  return settings;
}

const MAPPING_PATTERN = /^[A-Za-z0-9._*-]{1,128}$/;
const GROUP_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const REALM_ID = /^[a-z][a-z0-9-]{0,31}$/;

export function realmFormProblems(form: RealmForm, creating: boolean): string[] {
  const problems: string[] = [];
  if (creating && !REALM_ID.test(form.id.trim()))
    problems.push(
      'a realm id is 1-32 lower-case letters, digits or dashes, starting with a letter',
    );
  if (form.type === 'ldap') {
    if (!/^ldaps?:\/\/[^/\s]+\/?$/i.test(form.ldap.url.trim()))
      problems.push('the server URL is ldap://host[:port] or ldaps://host[:port]');
    if (!form.ldap.userBaseDn.includes('='))
      problems.push('the user base DN is a distinguished name, e.g. ou=people,dc=example,dc=com');
    if (!form.ldap.groupBaseDn.includes('='))
      problems.push('the group base DN is a distinguished name, e.g. ou=groups,dc=example,dc=com');
    if (!form.ldap.startTls && /^ldap:/i.test(form.ldap.url.trim()))
      problems.push(
        'an ldap:// URL needs StartTLS (or use ldaps://): passwords would travel in clear',
      );
    if (form.ldap.startTls && /^ldaps:/i.test(form.ldap.url.trim()))
      problems.push('StartTLS is for ldap:// URLs; ldaps:// is already encrypted');
    const interval = form.syncIntervalMinutes.trim();
    if (
      interval &&
      !(Number.isInteger(Number(interval)) && Number(interval) >= 5 && Number(interval) <= 10_080)
    ) {
      problems.push('the sync interval is 5 to 10080 minutes, or empty for on demand only');
    }
  } else {
    if (!/^https:\/\/\S+$/.test(form.openid.issuerUrl.trim()))
      problems.push('the issuer URL is an https:// URL');
    if (!form.openid.clientId.trim()) problems.push('the client id is needed');
    if (!words(form.openid.scopes).includes('openid'))
      problems.push('the scopes must include openid');
    if (creating && !form.secret) problems.push('an OpenID Connect realm needs its client secret');
  }
  const timeout = form.type === 'ldap' ? form.ldap.timeoutMs : form.openid.timeoutMs;
  if (
    timeout.trim() &&
    !(Number.isInteger(Number(timeout)) && Number(timeout) >= 100 && Number(timeout) <= 60_000)
  ) {
    problems.push('the timeout is 100 to 60000 ms');
  }
  for (const mapping of form.groupMappings) {
    if (!MAPPING_PATTERN.test(mapping.pattern.trim()))
      problems.push(
        `group mapping ${mapping.pattern || '(empty)'}: a pattern is 1-128 letters, digits, . _ - and *`,
      );
    if (mapping.group.trim() && !GROUP_ID.test(mapping.group.trim()))
      problems.push(`group mapping ${mapping.pattern}: ${mapping.group} is not a group id`);
  }
  return problems;
}

function mappings(form: RealmForm): Schemas['GroupMapping'][] {
  return form.groupMappings.map((m) => ({
    pattern: m.pattern.trim(),
    ...(m.group.trim() ? { group: m.group.trim() } : {}),
    ...(m.tenant ? { tenant: true } : {}),
  }));
}

const syncInterval = (form: RealmForm) =>
  form.type === 'ldap' && form.syncIntervalMinutes.trim() ? Number(form.syncIntervalMinutes) : null;

/** POST /api/v1/access/realms. */
export function createRealmBody(form: RealmForm): Schemas['CreateRealmDto'] {
  return {
    id: form.id.trim(),
    type: form.type,
    comment: form.comment.trim(),
    settings: realmSettings(form),
    ...(form.secret ? { secret: form.secret } : {}),
    requireTfa: form.requireTfa,
    groupMappings: mappings(form),
    syncIntervalMinutes: syncInterval(form),
    addAnyway: form.addAnyway,
  };
}

/** Keys in a fixed order, so that equal settings compare equal whatever order they were written in. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * PUT /api/v1/access/realms/{realm}: settings only when they changed (a change makes the manager
 * test an LDAP connection again), the secret only when a new one was typed or removal was asked.
 */
export function updateRealmBody(form: RealmForm, current: Realm): Schemas['UpdateRealmDto'] {
  if (current.type === 'local')
    return { comment: form.comment.trim(), requireTfa: form.requireTfa, addAnyway: false };
  const settings = realmSettings(form);
  const typeChanged = form.type !== current.type;
  const settingsChanged =
    typeChanged || canonical(settings) !== canonical(realmSettings(realmFormFrom(current)));
  return {
    ...(typeChanged ? { type: form.type } : {}),
    comment: form.comment.trim(),
    ...(settingsChanged ? { settings } : {}),
    ...(form.secret
      ? { secret: form.secret }
      : form.removeSecret && form.type === 'ldap'
        ? { secret: null }
        : {}),
    requireTfa: form.requireTfa,
    groupMappings: mappings(form),
    syncIntervalMinutes: syncInterval(form),
    addAnyway: form.addAnyway,
  };
}
