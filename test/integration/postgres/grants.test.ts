/**
 * The least grants the backend needs (docs/operations.md, "RDS for PostgreSQL"): a role that is not a superuser
 * and has either CREATE on the database (the schema is created at first start) or only a schema created for it
 * beforehand and owned by it. A role with neither is refused with a clear error.
 */
import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openPostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';

interface Role {
  name: string;
  url: string;
}

function roleUrl(name: string, password: string): string {
  const url = new URL(testDatabaseUrl());
  url.username = name;
  url.password = password;
  return url.toString();
}

describe('least grants', () => {
  const suffix = randomBytes(4).toString('hex');
  const roles: Record<'creator' | 'owner' | 'none', Role> = {} as never;
  const schemas = { creator: uniqueSchema('ibw_grant'), owner: uniqueSchema('ibw_grant'), none: uniqueSchema('ibw_grant') };
  let database: string;

  beforeAll(async () => {
    database = (await sql<{ d: string }>('SELECT current_database() AS d'))[0]!.d;
    for (const kind of ['creator', 'owner', 'none'] as const) {
      const name = `ibw_${kind}_${suffix}`;
      const password = randomBytes(8).toString('hex');
      await sql(`CREATE ROLE ${name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '${password}'`);
      roles[kind] = { name, url: roleUrl(name, password) };
    }
    await sql(`GRANT CREATE ON DATABASE "${database}" TO ${roles.creator.name}`);
    await sql(`CREATE SCHEMA ${schemas.owner} AUTHORIZATION ${roles.owner.name}`);
  });

  afterAll(async () => {
    for (const schema of Object.values(schemas)) await sql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await sql(`REVOKE CREATE ON DATABASE "${database}" FROM ${roles.creator.name}`).catch(() => undefined);
    for (const role of Object.values(roles)) await sql(`DROP ROLE IF EXISTS ${role.name}`).catch(() => undefined);
  });

  async function openAppendClose(kind: 'creator' | 'owner' | 'none'): Promise<void> {
    const ledger = await openPostgresLedger({ connectionString: roles[kind].url, schema: schemas[kind], leaseMs: 5000, renewEveryMs: 0 });
    try {
      await ledger.append([{ t: 'forget', key: 'pk/1' }]);
      await ledger.compact({ batches: new Map(), outbox: new Map() });
    } finally {
      await ledger.close();
    }
  }

  async function tablesOf(schema: string): Promise<{ table: string; owner: string }[]> {
    return sql<{ table: string; owner: string }>(
      'SELECT tablename AS table, tableowner AS owner FROM pg_tables WHERE schemaname = $1 ORDER BY tablename',
      [schema],
    );
  }

  const TABLES = ['batches', 'journal', 'leases', 'migrations', 'outbox', 'provision_jobs', 'replicas', 'results', 'snapshots'];

  it('CREATE on the database: the schema and its tables are created at first start, owned by the role', async () => {
    await openAppendClose('creator');
    const tables = await tablesOf(schemas.creator);
    expect(tables.map((t) => t.table)).toEqual(TABLES);
    expect(new Set(tables.map((t) => t.owner))).toEqual(new Set([roles.creator.name]));
  });

  it('no CREATE on the database, but a schema created for the role and owned by it: works too', async () => {
    await openAppendClose('owner');
    expect((await tablesOf(schemas.owner)).map((t) => t.table)).toEqual(TABLES);
  });

  it('neither: refused at start with the SQLSTATE, naming the schema, and nothing created', async () => {
    await expect(openAppendClose('none')).rejects.toMatchObject({
      kind: 'store',
      code: '42501',
      message: expect.stringContaining(`cannot migrate schema ${schemas.none}: permission denied`),
    });
    expect(await sql('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schemas.none])).toEqual([]);
  });
});
