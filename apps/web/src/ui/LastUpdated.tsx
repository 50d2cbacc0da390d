/** "Last updated 14:02:11" and a refresh button, for pages that refresh themselves. */
export function LastUpdated({
  at,
  fetching,
  onRefresh,
  label = 'Refresh',
}: {
  at: number;
  fetching: boolean;
  onRefresh: () => void;
  label?: string;
}) {
  return (
    <span className="last-updated">
      <span className="muted" aria-live="polite" data-testid="last-updated">
        {at ? `Last updated ${new Date(at).toLocaleTimeString()}` : 'Not loaded yet'}
      </span>
      <button type="button" onClick={onRefresh} disabled={fetching}>
        {fetching ? 'Refreshing…' : label}
      </button>
    </span>
  );
}
