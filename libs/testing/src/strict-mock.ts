import { vi, type Mock } from 'vitest';

type Methods<T> = {
  [K in keyof T]?: T[K] extends (...args: infer A) => infer R ? (...args: A) => R : never;
};
export type StrictMock<T> = T & {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? Mock<(...args: A) => R> : T[K];
};

/**
 * A stand-in for a repository where only the given methods exist (as vi.fn spies); touching any
 * other member throws, so an unexpected call fails the test. For unit tests only (imports vitest):
 * import it from '@debvisor/testing/strict-mock'.
 */
export function strictMock<T extends object>(
  name: string,
  methods: Methods<T> = {},
): StrictMock<T> {
  const spies = new Map<PropertyKey, Mock>();
  for (const [key, implementation] of Object.entries(methods))
    spies.set(key, vi.fn(implementation as (...args: unknown[]) => unknown));
  return new Proxy({} as StrictMock<T>, {
    get(_target, property) {
      if (spies.has(property)) return spies.get(property);
      // Promise resolution and vitest's pretty-printing probe these; they are not calls.
      if (
        property === 'then' ||
        typeof property === 'symbol' ||
        property === 'asymmetricMatch' ||
        property === 'nodeType' ||
        property === 'toJSON'
      )
        return undefined;
      throw new Error(`unexpected use of ${name}.${String(property)}`);
    },
  });
}

/** A clock that only moves when told; sleep() advances it at once. */
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
