import { cleanupTempDirs } from '@debvisor/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startTestDatabases,
  startTestManager,
  type Json,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

/**
 * Hostile input to every route of the OpenAPI document (issue 14, weakness 13): NUL bytes, huge
 * strings, odd unicode, path and option injection, deep nesting — in path parameters, queries and
 * bodies, as the Admin (so that the input reaches as deep as it can) and anonymously. No answer may
 * be a 5xx, and the log must not hold a failed statement's parameters. The routes come from the
 * served document, so a route added later is fuzzed without touching this file.
 */
let dbs: TestDatabases;
let m: TestManager;
let document: Json;

const HOSTILE: readonly string[] = [
  '\u0000',
  'a\u0000b',
  'x'.repeat(200_000),
  '\u202e\ufeff\uffff🙂\u0301',
  '\ud800',
  '../../../../etc/passwd',
  '..%2f..%2fetc%2fpasswd',
  '--help',
  '-rf',
  "'; DROP TABLE users; --",
  '${jndi:ldap://x}{{7*7}}',
  ' ',
  '',
];

beforeAll(async () => {
  dbs = await startTestDatabases();
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    env: { DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '10000000', DEBVISOR_RATE_LIMIT_GLOBAL: '10000000' },
  });
  const answer = await m.api('GET', '/api/v1/openapi.json');
  expect(answer.status).toBe(200);
  document = answer.body;
});
afterAll(async () => {
  await m?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

interface Operation {
  method: string;
  path: string;
  parameters: { name: string; in: string }[];
  bodySchema: Json | undefined;
}

function operations(): Operation[] {
  const found: Operation[] = [];
  for (const [path, item] of Object.entries(document.paths as Record<string, Json>))
    for (const [method, operation] of Object.entries(item as Record<string, Json>)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      found.push({
        method: method.toUpperCase(),
        path,
        parameters: (operation.parameters ?? []) as Operation['parameters'],
        bodySchema: operation.requestBody?.content?.['application/json']?.schema,
      });
    }
  return found;
}

/** A percent-encoding that also carries lone surrogates (encodeURIComponent throws on them). */
function encode(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return Buffer.from(value, 'utf8').toString('hex').replace(/(..)/g, '%$1');
  }
}

function resolve(schema: Json): Json {
  if (schema?.$ref) return resolve(document.components.schemas[schema.$ref.split('/').pop()]);
  return schema ?? {};
}

/** A body shaped like `schema` whose every string is `hostile`. */
function bodyFor(schema: Json, hostile: string, depth = 0): unknown {
  const s = resolve(schema);
  if (depth > 6) return hostile;
  const variant = s.oneOf?.[0] ?? s.anyOf?.[0] ?? s.allOf?.[0];
  if (variant && !s.properties) return bodyFor(variant, hostile, depth + 1);
  if (s.type === 'object' || s.properties) {
    const body: Record<string, unknown> = {};
    for (const [name, property] of Object.entries((s.properties ?? {}) as Record<string, Json>))
      body[name] = bodyFor(property, hostile, depth + 1);
    return body;
  }
  if (s.type === 'array') return [bodyFor(s.items, hostile, depth + 1)];
  if (s.type === 'integer' || s.type === 'number') return 1;
  if (s.type === 'boolean') return true;
  return hostile;
}

function deepNesting(levels: number): string {
  return '{"a":'.repeat(levels) + '1' + '}'.repeat(levels);
}

describe('hostile input to every route', () => {
  it('never answers 5xx, with a token or without, and never logs statement parameters', async () => {
    const ops = operations();
    expect(ops.length).toBeGreaterThan(50);
    const failures: string[] = [];
    let sent = 0;
    const send = async (
      method: string,
      url: string,
      body: unknown,
      options: { raw?: string; token?: null } = {},
    ) => {
      sent += 1;
      const answer = await m.api(method, url, body, options);
      if (answer.status >= 500 || answer.status === 0)
        failures.push(
          `${method} ${url.slice(0, 120)} → ${answer.status} ${answer.text.slice(0, 160)}`,
        );
      else if (answer.status >= 400 && typeof answer.body?.error?.code !== 'string')
        failures.push(`${method} ${url.slice(0, 120)} → ${answer.status} without the error shape`);
    };
    for (const op of ops) {
      for (const hostile of HOSTILE) {
        // A huge value makes the request line too large: 431, in the error shape too.
        const value = encode(hostile);
        const path = op.path.replace(/\{[^}]+\}/g, value);
        const query = op.parameters
          .filter((p) => p.in === 'query')
          .map((p) => `${p.name}=${value}`)
          .join('&');
        const url = query ? `${path}?${query}` : path;
        const body = op.bodySchema
          ? bodyFor(op.bodySchema, hostile)
          : { [hostile || 'k']: hostile };
        await send(op.method, url, op.method === 'GET' ? undefined : body);
        await send(op.method, url, op.method === 'GET' ? undefined : body, { token: null });
      }
      if (op.method !== 'GET') {
        const plain = op.path.replace(/\{[^}]+\}/g, 'sample');
        await send(op.method, plain, undefined, { raw: deepNesting(10_000) });
        await send(op.method, plain, undefined, { raw: JSON.stringify(['\u0000']) });
        await send(op.method, plain, undefined, { raw: '"\\u0000"' });
        if (op.bodySchema) await send(op.method, plain, bodyFor(op.bodySchema, '\u0000'));
      }
    }
    expect(sent).toBeGreaterThan(1000);
    expect(failures).toEqual([]);
    expect((await m.api('GET', '/healthz', undefined, { token: null })).status).toBe(200);
    expect(m.logs()).not.toMatch(/"parameters"|\$argon2/);
  }, 600_000);
});
