import type { Schemas } from '../api/client';

export type AuditEntry = Schemas['AuditEntry_Output'];
export type AuditOutcome = AuditEntry['outcome'];
export const AUDIT_OUTCOMES: readonly AuditOutcome[] = ['attempt', 'success', 'failure', 'denied'];

/** The manager's own entries: all of them, all but its routine reads of the remotes (the default), none. */
export type AuditSystemEntries = 'all' | 'no-routine' | 'none';
export const AUDIT_SYSTEM_ENTRIES: readonly { value: AuditSystemEntries; label: string }[] = [
  { value: 'no-routine', label: 'without routine reads' },
  { value: 'all', label: 'all' },
  { value: 'none', label: 'none' },
];

/** Entries per page ("Load older entries" fetches the next). */
export const AUDIT_PAGE_SIZE = 100;

/** The filter form as typed: From and To are datetime-local values (the browser's local time). */
export interface AuditFilterForm {
  principal: string;
  action: string;
  target: string;
  outcome: AuditOutcome | '';
  from: string;
  to: string;
  system: AuditSystemEntries;
}

export const EMPTY_AUDIT_FILTER: AuditFilterForm = {
  principal: '',
  action: '',
  target: '',
  outcome: '',
  from: '',
  to: '',
  system: 'no-routine',
};

/** The filters of GET /api/v1/audit and /audit/export (the same for both). */
export interface AuditFilter {
  principal?: string;
  action?: string;
  target?: string;
  outcome?: AuditOutcome;
  from?: string;
  to?: string;
  system?: AuditSystemEntries;
}

/** What the page shows before any filter is applied: the export then holds the same entries. */
export const DEFAULT_AUDIT_FILTER: AuditFilter = { system: 'no-routine' };

/** The manager's action names, as libs/audit's AUDIT_ACTION (the web bundle does not import that library). */
const ACTION = /^[a-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)*$/;

/**
 * A datetime-local value ("2025-03-01T14:30", the browser's time zone) as RFC 3339 in UTC, or null
 * when it is not a time.
 */
export function localToRfc3339(value: string): string | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/.exec(
    value.trim(),
  );
  if (!match) return null;
  const [, y, mo, d, h, mi, s = '0', ms = '0'] = match;
  const date = new Date(
    Number(y),
    Number(mo) - 1,
    Number(d),
    Number(h),
    Number(mi),
    Number(s),
    Number(ms.padEnd(3, '0')),
  );
  // new Date rolls 31 February over into March: such a value is not a time.
  if (
    Number.isNaN(date.getTime()) ||
    date.getMonth() !== Number(mo) - 1 ||
    date.getDate() !== Number(d)
  )
    return null;
  return date.toISOString();
}

/** The form as query parameters (empty fields left out), or what is wrong with it, by field. */
export function auditFilter(form: AuditFilterForm): {
  filter: AuditFilter;
  errors: Partial<Record<keyof AuditFilterForm, string>>;
} {
  const filter: AuditFilter = {};
  const errors: Partial<Record<keyof AuditFilterForm, string>> = {};
  const principal = form.principal.trim();
  if (principal) filter.principal = principal;
  const action = form.action.trim();
  if (action) {
    if (ACTION.test(action)) filter.action = action;
    else errors.action = 'an action name such as vm.power or vm.migrate';
  }
  const target = form.target.trim();
  if (target) {
    if (target.startsWith('/')) filter.target = target;
    else errors.target = 'a path such as /remotes/dc-east';
  }
  if (form.outcome) filter.outcome = form.outcome;
  filter.system = form.system;
  for (const field of ['from', 'to'] as const) {
    if (!form[field]) continue;
    const time = localToRfc3339(form[field]);
    if (time) filter[field] = time;
    else errors[field] = 'a date and time';
  }
  if (filter.from && filter.to && Date.parse(filter.to) <= Date.parse(filter.from))
    errors.to = 'must be later than From';
  return { filter, errors };
}

/** The file name the manager suggests (Content-Disposition), else a default with the date. */
export function exportFileName(contentDisposition: string | null, now: Date): string {
  const named = /filename="?([^";]+)"?/i.exec(contentDisposition ?? '')?.[1];
  if (named && /^[\w.-]+$/.test(named)) return named;
  return `debvisor-audit-${now.toISOString().slice(0, 10)}.jsonl`;
}

/** The one-line summary of an entry's details shown in the table (the expander shows them all). */
export function detailsSummary(details: Record<string, unknown>, max = 80): string {
  const parts = Object.entries(details).map(
    ([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`,
  );
  const text = parts.join(', ');
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
