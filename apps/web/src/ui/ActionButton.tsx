import type { ButtonHTMLAttributes } from 'react';

/**
 * A button that changes something. Every such button in the UI is an ActionButton: `allowed` comes
 * from the privileges the manager reported (libs/permissions names them); without them it stays
 * visible but disabled, and says which privilege it needs. `data-action` marks it for the
 * end-to-end test that an auditor sees no enabled action.
 */
export function ActionButton({
  allowed,
  needs,
  children,
  disabled,
  title,
  ...rest
}: ButtonHTMLAttributes<HTMLButtonElement> & { allowed: boolean; needs: string }) {
  return (
    <button
      type="button"
      data-action
      {...rest}
      disabled={!allowed || disabled}
      title={allowed ? title : `Needs the ${needs} privilege`}
    >
      {children}
    </button>
  );
}
