import { defineConfig } from 'vitest/config';

/**
 * The observability suite (`npm run test:prometheus`): config/observability/ against a real Prometheus scraping a
 * running daemon. Not part of `npm test`, because it needs Debian's `prometheus` package; `.ci/run` installs it.
 */
export default defineConfig({
  test: {
    include: ['test/prometheus/**/*.test.ts'],
    environment: 'node',
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
  },
});
