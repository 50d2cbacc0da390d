/**
 * The geometry of a sparkline: a polyline through the samples, oldest on the left, scaled so that
 * 0 is the bottom edge and `max` the top. Drawn by Sparkline.tsx as SVG; kept pure so it can be tested.
 */
export interface SparklineShape {
  /** The SVG path of the line; empty when there are no samples. */
  line: string;
  /** The same line closed along the bottom edge, for a light fill; empty when there are no samples. */
  area: string;
  /** Where the newest sample is drawn (for a dot); null when there are no samples. */
  last: { x: number; y: number } | null;
}

const round = (value: number) => Math.round(value * 10) / 10;

/**
 * `values` (oldest first) drawn into a `width` × `height` box with `inset` room on every side for
 * the stroke and the end dot. Values outside 0..max (and non-numbers) are clamped to the edges; a single
 * sample is a flat line across the box.
 */
export function sparkline(
  values: readonly number[],
  width: number,
  height: number,
  max = 1,
  inset = 2.5,
): SparklineShape {
  if (values.length === 0 || width <= 0 || height <= 0) return { line: '', area: '', last: null };
  const span = Math.max(0, height - 2 * inset);
  const across = Math.max(0, width - 2 * inset);
  const y = (value: number) => {
    const share = Number.isFinite(value) && max > 0 ? Math.min(1, Math.max(0, value / max)) : 0;
    return round(inset + span * (1 - share));
  };
  const points =
    values.length === 1
      ? [
          { x: inset, y: y(values[0]) },
          { x: round(inset + across), y: y(values[0]) },
        ]
      : values.map((value, i) => ({
          x: round(inset + (i / (values.length - 1)) * across),
          y: y(value),
        }));
  const line = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${p.x},${p.y}`).join(' ');
  const area = `${line} L${points[points.length - 1].x},${height} L${points[0].x},${height} Z`;
  return { line, area, last: points[points.length - 1] };
}
