import type { GroupMapping } from './realm.entity';

/** A manager group that external groups (directory groups, OIDC claims) map to. */
export interface MappedGroup {
  readonly id: string;
  readonly tenant: boolean;
}

const GROUP_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`, 'i');
}

/**
 * The manager groups for a user's external groups: each external group that matches a mapping's
 * pattern (first match wins) becomes the mapping's group, or a group of the same name when the
 * mapping names none. Unmapped external groups give nothing: a directory cannot create arbitrary
 * manager groups. Names that are not valid group ids are ignored.
 */
export function mapGroups(
  mappings: readonly GroupMapping[],
  external: readonly string[],
): MappedGroup[] {
  const compiled = mappings.map((m) => ({ mapping: m, regexp: globToRegExp(m.pattern) }));
  const result = new Map<string, MappedGroup>();
  for (const name of external) {
    const hit = compiled.find((c) => c.regexp.test(name));
    if (!hit) continue;
    const id = hit.mapping.group ?? name;
    if (!GROUP_ID.test(id)) continue;
    result.set(id, { id, tenant: result.get(id)?.tenant === true || hit.mapping.tenant === true });
  }
  return [...result.values()].sort((a, b) => a.id.localeCompare(b.id));
}
