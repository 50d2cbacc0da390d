import { z } from 'zod';

/**
 * Cluster-side permissions of an agent API key (the DebVisor RPC guide):
 * `service:resource:action`, `service:*` or `*`. Segments are lower-case words.
 */
const SEGMENT = '[a-z][a-z0-9-]{0,31}';
const SPEC = new RegExp(`^(\\*|${SEGMENT}:\\*|${SEGMENT}:${SEGMENT}:${SEGMENT})$`);

export const permissionSpecSchema = z
  .string()
  .regex(SPEC, 'a permission is service:resource:action, service:* or *');

/** A required permission is always fully qualified. */
export const requiredPermissionSchema = z
  .string()
  .regex(
    new RegExp(`^${SEGMENT}:${SEGMENT}:${SEGMENT}$`),
    'a required permission is service:resource:action',
  );

/** True when one of `granted` covers `required` (exact, the service wildcard, or `*`). */
export function permissionAllows(granted: readonly string[], required: string): boolean {
  const service = required.split(':', 1)[0];
  return granted.some((spec) => spec === '*' || spec === required || spec === `${service}:*`);
}
