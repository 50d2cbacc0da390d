import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The agent's version, from apps/agent/package.json (found from src/ and from dist/ alike). */
export const AGENT_VERSION: string = (
  JSON.parse(readFileSync(join(__dirname, '../../package.json'), 'utf8')) as { version: string }
).version;
