import { formatTime, formatUtc } from './format';

/** A moment in the user's locale; the same in UTC on hover (and for machines, in dateTime). */
export function Timestamp({ at }: { at: string | null | undefined }) {
  if (!at || Number.isNaN(new Date(at).getTime())) return <span className="muted">—</span>;
  return (
    <time dateTime={at} title={formatUtc(at)}>
      {formatTime(at)}
    </time>
  );
}
