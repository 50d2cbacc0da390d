import { cleanupTempDirs } from '@debvisor/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  grantToken,
  sqlQuery,
  startTestDatabases,
  startTestManager,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

let dbs: TestDatabases;
const started: TestManager[] = [];

beforeAll(async () => {
  dbs = await startTestDatabases();
}, 120_000);

afterEach(async () => {
  await Promise.all(started.splice(0).map((m) => m.stop()));
});

afterAll(async () => {
  await dbs?.stop();
  cleanupTempDirs();
});

async function manager(env: Record<string, string>): Promise<TestManager> {
  const m = await startTestManager({ databaseUrl: await dbs.fresh(), env });
  started.push(m);
  return m;
}

describe('rate limits', () => {
  it('answers 429 with Retry-After once a principal is over its limit, records it once, and leaves other principals alone', async () => {
    const m = await manager({ DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '5' });
    const other = await grantToken(m.databaseUrl!, 'other@local', 'Audit', '/');
    const statuses: number[] = [];
    let refused;
    for (let i = 0; i < 8; i += 1) {
      const answer = await m.api('GET', '/api/v1/remotes');
      statuses.push(answer.status);
      if (answer.status === 429) refused = answer;
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    expect(refused!.body.error.code).toBe('rate_limited');
    expect(Number(refused!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await m.api('GET', '/api/v1/remotes', undefined, { token: other })).status).toBe(200);
    const hits = await sqlQuery(
      m.databaseUrl!,
      "SELECT principal, details FROM audit_log WHERE action = 'ratelimit.hit'",
    );
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatchObject({ principal: 'admin@local', details: { limit: 'principal' } });
    const metrics = await m.api('GET', '/metrics', undefined, { token: null });
    expect(metrics.text).toMatch(/^rate_limit_violations_total 3$/m);
  });

  it('answers 429 to an address that keeps presenting invalid tokens, while valid tokens still work', async () => {
    const m = await manager({ DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE: '3' });
    const wrong = `dvdm_${'0'.repeat(16)}_${'x'.repeat(43)}`;
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1)
      statuses.push((await m.api('GET', '/api/v1/remotes', undefined, { token: wrong })).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
    expect((await m.api('GET', '/api/v1/remotes')).status).toBe(200);
  });

  it('refuses a body over 1 MB with 413 before any work', async () => {
    const m = await manager({});
    const answer = await m.api('POST', '/api/v1/auth/login', undefined, {
      token: null,
      raw: JSON.stringify({ username: 'admin', password: 'x'.repeat(1_100_000) }),
      headers: { 'content-type': 'application/json' },
    });
    expect(answer.status).toBe(413);
    expect(answer.body.error.code).toBe('payload_too_large');
  });
});
