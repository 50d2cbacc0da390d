import { vi, type Mock } from 'vitest';

type Mocked<T> = { [K in keyof T]: T[K] extends (...args: infer A) => infer R ? Mock<(...args: A) => R> & T[K] : T[K] };

/**
 * A stand-in for a repository whose every method is a vi.fn with the given implementation; any
 * other property read fails the test, so an unexpected call can never pass silently.
 */
export function strictMock<T extends object>(implementations: { [K in keyof T]?: T[K] }): Mocked<T> {
  const mocks = Object.fromEntries(
    Object.entries(implementations).map(([name, impl]) => [name, vi.fn(impl as (...args: unknown[]) => unknown)]),
  );
  return new Proxy(mocks, {
    get(target, property) {
      if (property === 'then') return undefined; // not a promise
      if (!(property in target)) throw new Error(`unexpected use of ${String(property)} on a strict mock`);
      return target[property as string];
    },
  }) as Mocked<T>;
}

/** A clock that only moves when told; sleep() advances it instantly. */
export function fakeClock(start = new Date('2026-01-01T00:00:00Z')) {
  let now = start.getTime();
  return {
    now: () => new Date(now),
    sleep: async (ms: number) => {
      now += ms;
    },
    advance(ms: number) {
      now += ms;
    },
  };
}
