import { sparkline } from './sparkline';

/**
 * A small line chart of recent samples (oldest on the left), drawn as inline SVG. It is one image
 * for assistive technology, named by `label` (which carries the latest figure).
 */
export function Sparkline({
  values,
  label,
  max = 1,
  width = 96,
  height = 24,
}: {
  values: readonly number[];
  label: string;
  max?: number;
  width?: number;
  height?: number;
}) {
  const shape = sparkline(values, width, height, max);
  return (
    <svg
      className="sparkline"
      role="img"
      aria-label={label}
      width={width}
      height={height}
      viewBox={`0 0 ${width} ${height}`}
      preserveAspectRatio="none"
    >
      <line className="sparkline-base" x1={0} x2={width} y1={height - 0.5} y2={height - 0.5} />
      {shape.area && <path className="sparkline-area" d={shape.area} />}
      {shape.line && <path className="sparkline-line" d={shape.line} />}
      {shape.last && <circle className="sparkline-dot" cx={shape.last.x} cy={shape.last.y} r={2} />}
    </svg>
  );
}
