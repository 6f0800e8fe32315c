/**
 * vitest globalSetup: one real PostgreSQL 15 for the whole run (DESIGN.md §12, issue #16). Tests read its URL
 * with `inject('ibwTestDatabaseUrl')` (test/helpers/postgres.ts); child processes get it from
 * `IBW_TEST_DATABASE_URL`. A server that cannot start fails the run: nothing is skipped.
 */
import type { TestProject } from 'vitest/node';

import { startTestPostgres } from '../helpers/postgres-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    ibwTestDatabaseUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startTestPostgres();
  project.provide('ibwTestDatabaseUrl', server.url);
  process.env.IBW_TEST_DATABASE_URL = server.url;
  if (process.env.IBW_TEST_PG_TIMING === '1') console.log(`PostgreSQL test server started in ${server.startMs.toFixed(0)} ms`);
  return () => server.stop();
}
