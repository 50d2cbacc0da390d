import { defineConfig, mergeConfig } from 'vitest/config';
import viteConfig from './vite.config';

export default mergeConfig(
  viteConfig,
  defineConfig({ test: { name: 'web', include: ['src/**/*.spec.ts'], environment: 'node' } }),
);
