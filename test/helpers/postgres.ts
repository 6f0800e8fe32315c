/** Helpers for tests that use the run's PostgreSQL server (started by test/setup/postgres.ts). */
import { randomBytes } from 'node:crypto';

import pg from 'pg';
import { inject } from 'vitest';

/** The run's server URL (with its password). */
export function testDatabaseUrl(): string {
  const url = inject('ibwTestDatabaseUrl');
  if (typeof url !== 'string' || url === '') throw new Error('no PostgreSQL test server: is test/setup/postgres.ts the globalSetup?');
  return url;
}

/** A schema name no other test uses, so test files can run in parallel on one server. */
export function uniqueSchema(prefix = 'ibw_test'): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/** Runs one query on a fresh connection (test assertions and clean-up). */
export async function sql<R extends pg.QueryResultRow = pg.QueryResultRow>(
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: testDatabaseUrl() });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** Drops a test schema. Only tests drop anything; the product never does. */
export async function dropSchema(schema: string): Promise<void> {
  await sql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}
