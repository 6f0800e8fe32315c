import { defineConfig } from 'vitest/config';

// Terminal views tested the way a person sees them: real tmux panes, captured. Needs the `tmux` package
// (apt-get install -y tmux); the tests fail, never skip, without it. Not part of `npm test`.
export default defineConfig({
  test: {
    include: ['test/tmux/**/*.test.ts'],
    environment: 'node',
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
