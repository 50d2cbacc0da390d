import { useId, type ReactNode } from 'react';

/** What a Field's control takes: its id (for the label), its description and whether it is invalid. */
export interface FieldControl {
  id: string;
  'aria-describedby'?: string;
  'aria-invalid'?: true;
}

/**
 * A labelled control with an optional help text or error below it. The label names only the
 * control (`for`/`id`), so the accessible name is exactly the label, whatever the control shows.
 */
export function Field({
  label,
  help,
  error,
  children,
}: {
  label: string;
  help?: ReactNode;
  error?: string;
  children: (control: FieldControl) => ReactNode;
}) {
  const id = useId();
  const described = help || error ? `${id}-help` : undefined;
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children({
        id,
        ...(described ? { 'aria-describedby': described } : {}),
        ...(error ? { 'aria-invalid': true as const } : {}),
      })}
      {described ? (
        <span id={described} className={error ? 'error' : 'muted'}>
          {error ?? help}
        </span>
      ) : null}
    </div>
  );
}

/** A checkbox with its label and, beside it, a description that is not part of its name. */
export function Checkbox({
  label,
  help,
  checked,
  onChange,
}: {
  label: string;
  help?: string;
  checked: boolean;
  onChange: (checked: boolean) => void;
}) {
  const id = useId();
  return (
    <div className="checkbox">
      <input
        id={id}
        type="checkbox"
        checked={checked}
        onChange={(event) => onChange(event.target.checked)}
        aria-describedby={help ? `${id}-help` : undefined}
      />{' '}
      <label htmlFor={id}>{label}</label>
      {help ? (
        <span id={`${id}-help`} className="muted">
          {' '}
          ({help})
        </span>
      ) : null}
    </div>
  );
}
