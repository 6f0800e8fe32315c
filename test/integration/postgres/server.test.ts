/** The test server from test/setup/postgres.ts: the real thing, on loopback, with password authentication. */
import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { sql, testDatabaseUrl } from '../../helpers/postgres.js';

describe('PostgreSQL test server', () => {
  it('is PostgreSQL 15 on 127.0.0.1 and the URL carries a password', async () => {
    const url = new URL(testDatabaseUrl());
    expect(url.hostname).toBe('127.0.0.1');
    expect(url.password).not.toBe('');
    const [row] = await sql<{ v: string; addr: string }>(
      "SELECT current_setting('server_version_num') AS v, inet_server_addr()::text AS addr",
    );
    expect(Number(row!.v)).toBeGreaterThanOrEqual(150000);
    expect(Number(row!.v)).toBeLessThan(160000);
    expect(row!.addr).toBe('127.0.0.1/32');
  });

  it('refuses a wrong password', async () => {
    const url = new URL(testDatabaseUrl());
    url.password = 'wrong';
    const client = new pg.Client({ connectionString: url.href });
    await expect(client.connect()).rejects.toThrow(/password authentication failed/);
  });
});
