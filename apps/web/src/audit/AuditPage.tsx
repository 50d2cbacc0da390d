import { Fragment, useId, useState, type FormEvent, type ReactNode } from 'react';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { ErrorNote } from '../ui/ErrorNote';
import { formatBytes, formatTime } from '../ui/format';
import { LastUpdated } from '../ui/LastUpdated';
import {
  AUDIT_OUTCOMES,
  AUDIT_SYSTEM_ENTRIES,
  auditFilter,
  DEFAULT_AUDIT_FILTER,
  detailsSummary,
  EMPTY_AUDIT_FILTER,
  type AuditEntry,
  type AuditFilter,
  type AuditFilterForm,
  type AuditOutcome,
  type AuditSystemEntries,
} from './audit-filter';
import { useAuditExport } from './mutations';
import { useAuditEntries } from './queries';
import './audit.css';

/** #/audit: the audit log, newest first, filtered on the server, a page at a time; its export as JSON lines. */
export function AuditPage({ signedIn }: { signedIn: SignedIn }) {
  if (!may(signedIn, 'audit.read')) {
    return (
      <main className="audit">
        <h1>Audit log</h1>
        <p role="status">Reading the audit log needs the audit.read privilege.</p>
      </main>
    );
  }
  return <AuditLog />;
}

function AuditLog() {
  const [filter, setFilter] = useState<AuditFilter>(DEFAULT_AUDIT_FILTER);
  const entries = useAuditEntries(filter);
  const exporting = useAuditExport();
  const items = entries.data?.pages.flatMap((page) => page.items) ?? [];
  return (
    <main className="audit">
      <div className="toolbar">
        <h1>Audit log</h1>
        <LastUpdated
          at={entries.dataUpdatedAt}
          fetching={entries.isFetching}
          onRefresh={() => void entries.refetch()}
        />
      </div>
      <AuditFilterFields onApply={setFilter} />
      <div className="actions export">
        <button
          type="button"
          onClick={() => exporting.mutate(filter)}
          disabled={exporting.isPending}
        >
          {exporting.isPending ? 'Exporting…' : 'Export (JSON lines)'}
        </button>
        <span className="muted" aria-live="polite">
          {exporting.data
            ? `Saved ${exporting.data.fileName} (${formatBytes(exporting.data.bytes)}).`
            : 'The entries matching the filter, oldest first, with their hash chain (a filtered export has gaps: verify it with --allow-gaps).'}
        </span>
      </div>
      <ErrorNote error={exporting.error} />
      <ErrorNote error={entries.error} />
      {entries.isPending ? (
        <p>Loading…</p>
      ) : items.length === 0 ? (
        <p className="muted">No entry matches the filter.</p>
      ) : (
        <AuditTable items={items} />
      )}
      {entries.hasNextPage ? (
        <p>
          <button
            type="button"
            onClick={() => void entries.fetchNextPage()}
            disabled={entries.isFetchingNextPage}
          >
            {entries.isFetchingNextPage ? 'Loading…' : 'Load older entries'}
          </button>
        </p>
      ) : items.length > 0 ? (
        <p className="muted">No older entries.</p>
      ) : null}
    </main>
  );
}

function AuditFilterFields({ onApply }: { onApply: (filter: AuditFilter) => void }) {
  const [form, setForm] = useState<AuditFilterForm>(EMPTY_AUDIT_FILTER);
  const [errors, setErrors] = useState<Partial<Record<keyof AuditFilterForm, string>>>({});
  const id = useId();
  const set = (field: keyof AuditFilterForm) => (event: { target: { value: string } }) =>
    setForm((current) => ({ ...current, [field]: event.target.value }));
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const parsed = auditFilter(form);
    setErrors(parsed.errors);
    if (Object.keys(parsed.errors).length === 0) onApply(parsed.filter);
  };
  const field = (
    name: keyof AuditFilterForm,
    label: string,
    control: (props: {
      id: string;
      'aria-invalid'?: true;
      'aria-describedby'?: string;
    }) => ReactNode,
  ) => (
    <div className="filter">
      <label htmlFor={`${id}-${name}`}>{label}</label>
      {control({
        id: `${id}-${name}`,
        ...(errors[name]
          ? { 'aria-invalid': true as const, 'aria-describedby': `${id}-${name}-error` }
          : {}),
      })}
      {errors[name] ? (
        <span id={`${id}-${name}-error`} className="error field-error">
          {errors[name]}
        </span>
      ) : null}
    </div>
  );
  const text = (name: 'principal' | 'action' | 'target', label: string, placeholder: string) =>
    field(name, label, (props) => (
      <input {...props} value={form[name]} onChange={set(name)} placeholder={placeholder} />
    ));
  const time = (name: 'from' | 'to', label: string) =>
    field(name, label, (props) => (
      <input {...props} type="datetime-local" value={form[name]} onChange={set(name)} />
    ));
  return (
    <form className="filters" onSubmit={submit} aria-label="Filter the audit log">
      {text('principal', 'Principal', 'admin@local')}
      {text('action', 'Action', 'vm.migrate')}
      {text('target', 'Target', '/remotes/dc-east')}
      {field('outcome', 'Outcome', (props) => (
        <select
          {...props}
          value={form.outcome}
          onChange={(event) =>
            setForm((current) => ({ ...current, outcome: event.target.value as AuditOutcome | '' }))
          }
        >
          <option value="">any</option>
          {AUDIT_OUTCOMES.map((outcome) => (
            <option key={outcome} value={outcome}>
              {outcome}
            </option>
          ))}
        </select>
      ))}
      {field('system', "Manager's own entries", (props) => (
        <select
          {...props}
          value={form.system}
          onChange={(event) =>
            setForm((current) => ({ ...current, system: event.target.value as AuditSystemEntries }))
          }
        >
          {AUDIT_SYSTEM_ENTRIES.map((choice) => (
            <option key={choice.value} value={choice.value}>
              {choice.label}
            </option>
          ))}
        </select>
      ))}
      {time('from', 'From')}
      {time('to', 'To')}
      <div className="filter-buttons">
        <button type="submit" className="primary">
          Apply filters
        </button>
        <button
          type="button"
          onClick={() => {
            setForm(EMPTY_AUDIT_FILTER);
            setErrors({});
            onApply(DEFAULT_AUDIT_FILTER);
          }}
        >
          Clear
        </button>
      </div>
    </form>
  );
}

function AuditTable({ items }: { items: AuditEntry[] }) {
  const [open, setOpen] = useState<ReadonlySet<number>>(new Set());
  const toggle = (seq: number) =>
    setOpen((current) => {
      const next = new Set(current);
      if (next.has(seq)) next.delete(seq);
      else next.add(seq);
      return next;
    });
  return (
    <table className="audit-table">
      <caption className="visually-hidden">Audit entries, newest first</caption>
      <thead>
        <tr>
          <th scope="col">Time</th>
          <th scope="col">Principal</th>
          <th scope="col">Action</th>
          <th scope="col">Target</th>
          <th scope="col">Outcome</th>
          <th scope="col">Details</th>
        </tr>
      </thead>
      <tbody>
        {items.map((entry) => {
          const expanded = open.has(entry.seq);
          const detailsId = `audit-details-${entry.seq}`;
          return (
            <Fragment key={entry.seq}>
              <tr
                data-testid="audit-row"
                data-seq={entry.seq}
                data-audit-action={entry.action}
                data-outcome={entry.outcome}
              >
                <td className="time">
                  <time dateTime={entry.ts}>{formatTime(entry.ts)}</time>
                </td>
                <td className="principal">{entry.principal ?? '—'}</td>
                <th scope="row" className="action">
                  {entry.action}
                </th>
                <td className="target">{entry.target ?? '—'}</td>
                <td>
                  <span className={`badge outcome-${entry.outcome}`}>{entry.outcome}</span>
                </td>
                <td className="details-cell">
                  <button
                    type="button"
                    className="link"
                    aria-expanded={expanded}
                    aria-controls={detailsId}
                    onClick={() => toggle(entry.seq)}
                  >
                    {expanded ? 'Hide' : 'Show'}
                    <span className="visually-hidden"> details of entry {entry.seq}</span>
                  </button>{' '}
                  <span className="muted summary">{detailsSummary(entry.details)}</span>
                </td>
              </tr>
              {expanded ? (
                <tr className="audit-details" id={detailsId}>
                  <td colSpan={6}>
                    <dl>
                      <div>
                        <dt>Sequence</dt>
                        <dd>{entry.seq}</dd>
                      </div>
                      <div>
                        <dt>Trace id</dt>
                        <dd>
                          <code>{entry.traceId ?? '—'}</code>
                        </dd>
                      </div>
                      <div>
                        <dt>Source</dt>
                        <dd>{entry.source ?? '—'}</dd>
                      </div>
                      <div className="wide">
                        <dt>Hash</dt>
                        <dd>
                          <code>{entry.hash}</code>
                        </dd>
                      </div>
                      <div className="wide">
                        <dt>Previous hash</dt>
                        <dd>
                          <code>{entry.prevHash}</code>
                        </dd>
                      </div>
                    </dl>
                    <pre>{JSON.stringify(entry.details, null, 2)}</pre>
                  </td>
                </tr>
              ) : null}
            </Fragment>
          );
        })}
      </tbody>
    </table>
  );
}
