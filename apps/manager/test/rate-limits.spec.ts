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
    // /metrics needs system.audit on / (and admin@local is over its limit here).
    const metrics = await m.api('GET', '/metrics', undefined, { token: other });
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

  it('keys the per-principal limit on the principal: more tokens of one user buy no more requests (issue 14 item 2)', async () => {
    const m = await manager({ DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '6' });
    const first = await grantToken(m.databaseUrl!, 'many@local', 'Audit', '/');
    const second = await grantToken(m.databaseUrl!, 'many@local', 'Audit', '/');
    const statuses: number[] = [];
    for (let i = 0; i < 4; i += 1)
      for (const token of [first, second])
        statuses.push((await m.api('GET', '/api/v1/remotes', undefined, { token })).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
  });

  it('never charges the global limit for a refused call, and keeps an admin answerable under another principal’s flood (issue 14 item 2)', async () => {
    const m = await manager({
      DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '3',
      DEBVISOR_RATE_LIMIT_GLOBAL: '6',
    });
    const flooder = await grantToken(m.databaseUrl!, 'flood@local', 'Audit', '/');
    const bystander = await grantToken(m.databaseUrl!, 'calm@local', 'Audit', '/');
    const flood = await Promise.all(
      Array.from({ length: 40 }, () =>
        m.api('GET', '/api/v1/remotes', undefined, { token: flooder }),
      ),
    );
    expect(flood.filter((a) => a.status === 200)).toHaveLength(3);
    // The 37 refused calls took nothing from the manager's budget: others still fit in it.
    const calm = await Promise.all(
      Array.from({ length: 3 }, () =>
        m.api('GET', '/api/v1/remotes', undefined, { token: bystander }),
      ),
    );
    expect(calm.map((a) => a.status)).toEqual([200, 200, 200]);
    const admin = await Promise.all(
      Array.from({ length: 3 }, () => m.api('GET', '/api/v1/remotes')),
    );
    expect(admin.map((a) => a.status)).toEqual([200, 200, 200]);
  });

  it('keeps an admin answerable while many principals flood the global limit (issue 14 item 2)', async () => {
    const m = await manager({
      DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '1000',
      DEBVISOR_RATE_LIMIT_GLOBAL: '5',
    });
    const flooders = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        grantToken(m.databaseUrl!, `flood${i}@local`, 'Audit', '/'),
      ),
    );
    const flood = Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        m.api('GET', '/api/v1/remotes', undefined, { token: flooders[i % 4] }),
      ),
    );
    const admin = await Promise.all(
      Array.from({ length: 10 }, () => m.api('GET', '/api/v1/remotes')),
    );
    expect((await flood).some((a) => a.status === 429)).toBe(true);
    expect(admin.map((a) => a.status)).toEqual(Array(10).fill(200));
  });

  it('caps the tokens one owner may hold (issue 14 item 2)', async () => {
    const m = await manager({ DEBVISOR_TOKENS_PER_OWNER: '2' });
    await m.api('POST', '/api/v1/access/users', {
      username: 'hoarder',
      password: 'correct-Horse-7-battery',
    });
    const make = (name: string) =>
      m.api('POST', '/api/v1/access/tokens', { ownerType: 'user', owner: 'hoarder@local', name });
    const made = await Promise.all(['a', 'b', 'c', 'd'].map(make));
    expect(made.map((a) => a.status).sort()).toEqual([201, 201, 409, 409]);
    expect(made.find((a) => a.status === 409)!.body.error.message).toContain('at most 2');
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
