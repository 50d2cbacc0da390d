import { fileURLToPath } from 'node:url';
import swc from 'unplugin-swc';
import { defineConfig, type UserConfig } from 'vitest/config';

const root = fileURLToPath(new URL('.', import.meta.url));
const libs = ['proto', 'pki', 'common', 'permissions', 'audit', 'testing'];

/**
 * The vitest configuration every project extends: @debvisor/* resolve to their sources, and SWC
 * compiles TypeScript so that NestJS sees decorator metadata (esbuild does not emit it).
 */
export function projectConfig(name: string, overrides: UserConfig['test'] = {}): UserConfig {
  return defineConfig({
    plugins: [swc.vite({ module: { type: 'es6' }, jsc: { target: 'es2022' } })],
    resolve: {
      alias: [
        // @debvisor/<lib> → its index, @debvisor/<lib>/<file> → that file (e.g. testing/strict-mock)
        {
          find: new RegExp(`^@debvisor/(${libs.join('|')})$`),
          replacement: `${root}libs/$1/src/index.ts`,
        },
        {
          find: new RegExp(`^@debvisor/(${libs.join('|')})/([a-z-]+)$`),
          replacement: `${root}libs/$1/src/$2.ts`,
        },
      ],
    },
    test: {
      name,
      include: ['src/**/*.spec.ts', 'test/**/*.spec.ts'],
      environment: 'node',
      testTimeout: 60_000,
      hookTimeout: 120_000,
      pool: 'forks',
      ...overrides,
    },
  });
}
