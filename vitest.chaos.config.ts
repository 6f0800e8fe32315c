import { defineConfig } from 'vitest/config';

/**
 * The reliability suite (`npm run test:chaos`, docs/reliability.md). CI runs the short version; `CHAOS_FULL=1`
 * runs the long one (1,000 batches, 20 kills, a 30 s outage, more fuzz cases). Files run one at a time in one
 * fork: each suite starts child daemons and measures request rates, so two suites must not fight for 2 cores.
 */
const full = process.env.CHAOS_FULL === '1';

export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    environment: 'node',
    testTimeout: full ? 3_600_000 : 600_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
    sequence: { concurrent: false },
  },
});
