import { fileURLToPath } from 'node:url';
import swc from 'unplugin-swc';
import { defineConfig, type UserConfig } from 'vitest/config';

const root = fileURLToPath(new URL('.', import.meta.url));
const libs = ['proto', 'pki', 'common', 'permissions', 'testing'];

/**
 * The vitest configuration every project extends: @debvisor/* resolve to their sources, and SWC
 * compiles TypeScript so that NestJS sees decorator metadata (esbuild does not emit it).
 */
export function projectConfig(name: string, overrides: UserConfig['test'] = {}): UserConfig {
  return defineConfig({
    plugins: [swc.vite({ module: { type: 'es6' }, jsc: { target: 'es2022' } })],
    resolve: {
      alias: Object.fromEntries(libs.map((lib) => [`@debvisor/${lib}`, `${root}libs/${lib}/src/index.ts`])),
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
