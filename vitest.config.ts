import { defineConfig } from 'vitest/config';

// One run over every project; each project's own vitest.config.ts says what it holds.
export default defineConfig({
  test: {
    projects: ['libs/*/vitest.config.ts', 'apps/*/vitest.config.ts', 'test/vitest.config.ts'],
  },
});
