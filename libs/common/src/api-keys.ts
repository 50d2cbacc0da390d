import { z } from 'zod';

/**
 * Agent API keys: `dvk_<id>_<secret>` with a 16-hex-digit id and a 256-bit secret in base64url.
 * The prefix lets secret scanners find leaked keys.
 */
export const AGENT_KEY_PREFIX = 'dvk';
const AGENT_KEY = /^dvk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
/** As far as the id: enough to name a key in logs and audit, even one whose secret is malformed. */
const AGENT_KEY_ID = /^dvk_([0-9a-f]{16})_/;

export const apiKeyIdSchema = z.string().regex(/^[0-9a-f]{16}$/, 'an API key id is 16 hex digits');

export function formatAgentApiKey(id: string, secret: string): string {
  return `${AGENT_KEY_PREFIX}_${id}_${secret}`;
}

/** The id and secret of a presented key, or undefined when it is not shaped like one. */
export function parseAgentApiKey(value: string): { id: string; secret: string } | undefined {
  const match = AGENT_KEY.exec(value);
  return match ? { id: match[1], secret: match[2] } : undefined;
}

/** The public id of a key (`dvk_<id>_…`), or undefined when it does not start like one. */
export function agentApiKeyId(value: string): string | undefined {
  return AGENT_KEY_ID.exec(value)?.[1];
}
