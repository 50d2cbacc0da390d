import type { StateLabel } from './ha-view';

/** A state as a badge: an icon and a word, never colour alone. */
export function StateBadge({ label, testId }: { label: StateLabel; testId?: string }) {
  return (
    <span className={`ha-badge ha-${label.tone}`} data-testid={testId}>
      <span aria-hidden="true">{label.icon}</span> {label.word}
    </span>
  );
}
