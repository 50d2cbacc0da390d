import {
  useId,
  type InputHTMLAttributes,
  type ReactNode,
  type SelectHTMLAttributes,
  type TextareaHTMLAttributes,
} from 'react';
import { ErrorNote } from '../ui/ErrorNote';
import { LastUpdated } from '../ui/LastUpdated';

/** Small pieces the administration sections share: labelled fields, form problems, loading states. */

type TextProps = Omit<InputHTMLAttributes<HTMLInputElement>, 'onChange' | 'value' | 'id'> & {
  label: string;
  value: string;
  onChange: (value: string) => void;
  hint?: ReactNode;
};

/** A labelled input; the hint is tied to it with aria-describedby. */
export function TextField({ label, value, onChange, hint, ...rest }: TextProps) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        value={value}
        onChange={(e) => onChange(e.target.value)}
        aria-describedby={hint ? `${id}-hint` : undefined}
        {...rest}
      />
      {hint && (
        <span id={`${id}-hint`} className="muted">
          {hint}
        </span>
      )}
    </div>
  );
}

type AreaProps = Omit<TextareaHTMLAttributes<HTMLTextAreaElement>, 'onChange' | 'value' | 'id'> & {
  label: string;
  value: string;
  onChange: (value: string) => void;
  hint?: ReactNode;
};

export function TextAreaField({ label, value, onChange, hint, ...rest }: AreaProps) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <textarea
        id={id}
        value={value}
        onChange={(e) => onChange(e.target.value)}
        aria-describedby={hint ? `${id}-hint` : undefined}
        {...rest}
      />
      {hint && (
        <span id={`${id}-hint`} className="muted">
          {hint}
        </span>
      )}
    </div>
  );
}

type SelectProps = Omit<SelectHTMLAttributes<HTMLSelectElement>, 'onChange' | 'value' | 'id'> & {
  label: string;
  value: string;
  onChange: (value: string) => void;
  options: readonly { value: string; label: string }[];
};

export function SelectField({ label, value, onChange, options, ...rest }: SelectProps) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)} {...rest}>
        {options.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
    </div>
  );
}

export function CheckField({
  label,
  checked,
  onChange,
  hint,
  disabled,
}: {
  label: string;
  checked: boolean;
  onChange: (checked: boolean) => void;
  hint?: ReactNode;
  disabled?: boolean;
}) {
  const id = useId();
  return (
    <div className="field check">
      <label className="inline" htmlFor={id}>
        <input
          id={id}
          type="checkbox"
          checked={checked}
          disabled={disabled}
          onChange={(e) => onChange(e.target.checked)}
          aria-describedby={hint ? `${id}-hint` : undefined}
        />
        {label}
      </label>
      {hint && (
        <span id={`${id}-hint`} className="muted">
          {hint}
        </span>
      )}
    </div>
  );
}

/** What the form check found, announced; nothing when empty. */
export function Problems({ problems }: { problems: readonly string[] }) {
  if (problems.length === 0) return null;
  return (
    // The alert role on the list itself would take its list semantics away (axe: listitem).
    <div role="alert">
      <ul className="error problems">
        {problems.map((p) => (
          <li key={p}>{p}</li>
        ))}
      </ul>
    </div>
  );
}

/** Loading and error states of a list; its content once loaded. */
export function Loaded<T>({
  query,
  children,
}: {
  query: { isPending: boolean; isError: boolean; error: unknown; data: T | undefined };
  children: (data: T) => ReactNode;
}) {
  if (query.isError) return <ErrorNote error={query.error} />;
  if (query.isPending || query.data === undefined) return <p className="muted">Loading…</p>;
  return <>{children(query.data)}</>;
}

/** A section the signed-in user may not read. */
export function NotReadable({ privilege }: { privilege: string }) {
  return (
    <p role="status" className="notice">
      Reading this needs the {privilege} privilege; the manager would refuse it.
    </p>
  );
}

/** yes / no in words. */
export const yesNo = (value: boolean) => (value ? 'yes' : 'no');

/** "Last updated" and a refresh button for a section's lists (other administrators change them too). */
export function Refresh({
  queries,
}: {
  queries: readonly {
    dataUpdatedAt: number;
    isFetching: boolean;
    refetch: () => Promise<unknown>;
  }[];
}) {
  const loaded = queries.map((q) => q.dataUpdatedAt).filter((at) => at > 0);
  const at = loaded.length > 0 ? Math.min(...loaded) : 0;
  return (
    <LastUpdated
      at={at}
      fetching={queries.some((q) => q.isFetching)}
      onRefresh={() => queries.forEach((q) => void q.refetch())}
    />
  );
}
