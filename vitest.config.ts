import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 90_000,
    hookTimeout: 180_000,
    // Two cores: one test file at a time keeps timing-sensitive flows (refresh, TTL) honest.
    fileParallelism: false,
  },
});
