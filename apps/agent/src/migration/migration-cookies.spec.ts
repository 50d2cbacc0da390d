import { describe, expect, it } from 'vitest';
import { MigrationCookies, pskOf } from './migration-cookies';

function fakeClock(start = Date.parse('2026-11-23T10:00:00Z')) {
  let now = start;
  return {
    now: () => new Date(now),
    sleep: async () => undefined,
    advance: (ms: number) => (now += ms),
  };
}

const VM = '6c2b7f7e-5a8f-4d5e-9a3b-1f2e3d4c5b6a';
const OTHER_VM = '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0';
const MIGRATION = '2b1a0f9e-8d7c-4b6a-9f4e-3d2c1b0a9f8e';

describe('one-time migration cookies', () => {
  it('accepts a fresh cookie once for its VM and migration', () => {
    const cookies = new MigrationCookies(fakeClock());
    const { cookie } = cookies.issue({ vmUuid: VM, migrationId: MIGRATION }, 60_000);
    expect(cookie).toMatch(/^dvmc_[A-Za-z0-9_-]{43}$/);
    expect(() => cookies.claim(cookie, { vmUuid: VM, migrationId: MIGRATION })).not.toThrow();
  });

  it('refuses a reused cookie', () => {
    const cookies = new MigrationCookies(fakeClock());
    const { cookie } = cookies.issue({ vmUuid: VM, migrationId: MIGRATION }, 60_000);
    cookies.claim(cookie, { vmUuid: VM, migrationId: MIGRATION });
    expect(() => cookies.claim(cookie, { vmUuid: VM, migrationId: MIGRATION })).toThrow(
      /already used/,
    );
  });

  it('refuses a cookie presented for another VM, and burns it', () => {
    const cookies = new MigrationCookies(fakeClock());
    const { cookie } = cookies.issue({ vmUuid: VM, migrationId: MIGRATION }, 60_000);
    expect(() => cookies.claim(cookie, { vmUuid: OTHER_VM, migrationId: MIGRATION })).toThrow(
      /another VM/,
    );
    expect(() => cookies.claim(cookie, { vmUuid: VM, migrationId: MIGRATION })).toThrow(
      /already used/,
    );
  });

  it('refuses an expired cookie with the time it expired', () => {
    const clock = fakeClock();
    const cookies = new MigrationCookies(clock);
    const { cookie } = cookies.issue({ vmUuid: VM, migrationId: MIGRATION }, 60_000);
    clock.advance(60_001);
    expect(() => cookies.claim(cookie, { vmUuid: VM, migrationId: MIGRATION })).toThrow(
      /expired at 2026-11-23T10:01:00/,
    );
  });

  it('refuses a cookie it never issued, and a revoked one', () => {
    const cookies = new MigrationCookies(fakeClock());
    expect(() =>
      cookies.claim('dvmc_' + 'A'.repeat(43), { vmUuid: VM, migrationId: MIGRATION }),
    ).toThrow(/unknown migration cookie/);
    const { cookie } = cookies.issue({ vmUuid: VM, migrationId: MIGRATION }, 60_000);
    cookies.revoke(MIGRATION, 'the migration was cancelled; its cookie is void');
    expect(() => cookies.claim(cookie, { vmUuid: VM, migrationId: MIGRATION })).toThrow(
      /cancelled/,
    );
  });

  it('derives the same TLS key on both ends, and another for another VM', () => {
    const cookies = new MigrationCookies(fakeClock());
    const { cookie } = cookies.issue({ vmUuid: VM, migrationId: MIGRATION }, 60_000);
    const a = pskOf(cookie, { vmUuid: VM, migrationId: MIGRATION });
    expect(a.key).toHaveLength(32);
    expect(pskOf(cookie, { vmUuid: VM, migrationId: MIGRATION }).key.equals(a.key)).toBe(true);
    expect(pskOf(cookie, { vmUuid: OTHER_VM, migrationId: MIGRATION }).key.equals(a.key)).toBe(
      false,
    );
  });
});
