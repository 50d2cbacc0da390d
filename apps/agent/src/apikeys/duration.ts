const UNIT_MS: Record<string, number> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const MAX_MS = 10 * 366 * 86_400_000;

/** `90d`, `12h`, `30m`, `45s`, `2w` → milliseconds; `never` → null; anything else → undefined. */
export function parseExpiresIn(value: string): number | null | undefined {
  if (value === 'never') return null;
  const match = /^([1-9]\d{0,5})([smhdw])$/.exec(value);
  if (!match) return undefined;
  const ms = Number(match[1]) * UNIT_MS[match[2]];
  return ms <= MAX_MS ? ms : undefined;
}
