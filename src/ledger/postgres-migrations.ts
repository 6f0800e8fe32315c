/**
 * Versioned, non-destructive schema migrations for the postgres backend. Each migration runs once, in order,
 * inside one transaction with its `migrations` row; a transaction-level advisory lock keyed by the schema name
 * makes replicas that start together take turns. Migrations only add (CREATE ... IF NOT EXISTS, ADD COLUMN):
 * nothing here drops a table, a column or a row, and a later version must keep it that way.
 *
 * Every table is keyed by `account` (DESIGN.md §11/§12: the account is the unit of ownership), so more
 * accounts and replicas share the same tables.
 */
import type pg from 'pg';

/** One migration: a version (1, 2, ...), a name for the DBA, and the statements (`${s}` is the quoted schema). */
export interface Migration {
  version: number;
  name: string;
  statements: (s: string) => string[];
}

/** Every migration, in version order. Append new ones; never edit or remove a released one. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'ledger, leases and results',
    statements: (s) => [
      // Ownership of an account: one row per account; `epoch` grows by one at every change of owner and fences
      // every write. `owner` is null after a release. Times are the server's clock.
      `CREATE TABLE IF NOT EXISTS ${s}.leases (
        account text PRIMARY KEY,
        owner text,
        epoch bigint NOT NULL,
        expires_at timestamptz NOT NULL,
        acquired_at timestamptz NOT NULL,
        renewed_at timestamptz NOT NULL
      )`,
      // The compacted state: batch records and undelivered events as of journal seq `snapshot_seq`.
      `CREATE TABLE IF NOT EXISTS ${s}.snapshots (
        account text PRIMARY KEY,
        snapshot_seq bigint NOT NULL,
        compacted_at timestamptz NOT NULL DEFAULT now()
      )`,
      // `ord` keeps the order the file ledger keeps (first insertion since the key last disappeared).
      `CREATE TABLE IF NOT EXISTS ${s}.batches (
        account text NOT NULL,
        key text NOT NULL,
        ord bigint NOT NULL,
        rec json NOT NULL,
        PRIMARY KEY (account, key)
      )`,
      `CREATE TABLE IF NOT EXISTS ${s}.outbox (
        account text NOT NULL,
        id text NOT NULL,
        ord bigint NOT NULL,
        entry json NOT NULL,
        PRIMARY KEY (account, id)
      )`,
      // Records appended after the snapshot, replayed in seq order over it.
      `CREATE TABLE IF NOT EXISTS ${s}.journal (
        account text NOT NULL,
        seq bigint NOT NULL,
        rec json NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (account, seq)
      )`,
      // Full BatchResult JSON, device secrets included (DESIGN.md §4/§12): grant SELECT on it sparingly.
      `CREATE TABLE IF NOT EXISTS ${s}.results (
        account text NOT NULL,
        product_key text NOT NULL,
        apply_id text NOT NULL,
        outcome text NOT NULL,
        device_count integer NOT NULL,
        result json NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (account, product_key, apply_id)
      )`,
    ],
  },
  {
    version: 2,
    name: 'replica heartbeats',
    statements: (s) => [
      // One row per running replica (src/ledger/replicas.ts): its heartbeat, expiring on the server's clock. The
      // fair spread of accounts counts the rows that have not expired. A replica deletes its row when it leaves;
      // an expired row of a dead one is deleted by the next heartbeat of another after a day (kept meanwhile for
      // the DBA: who ran, from where, until when).
      `CREATE TABLE IF NOT EXISTS ${s}.replicas (
        id text PRIMARY KEY,
        host text NOT NULL,
        pid integer NOT NULL,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
      )`,
    ],
  },
  {
    version: 3,
    name: 'provisioning job state',
    statements: (s) => [
      // The durable state of each provisioning job of an account (DESIGN.md §13; src/provision/job-state.ts):
      // its chunks with their submission intents and ApplyIds, its created devices with their DeviceSecrets (grant
      // SELECT on it as sparingly as on results), the facts announced. Written by the account's owner only,
      // fenced by its lease, so a replica that takes the account over resumes every job where it was.
      `CREATE TABLE IF NOT EXISTS ${s}.provision_jobs (
        account text NOT NULL,
        name text NOT NULL,
        state json NOT NULL,
        saved_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (account, name)
      )`,
    ],
  },
];

/** The newest schema version this code knows. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/**
 * Creates the schema when missing and applies the migrations it lacks. Returns the versions applied now.
 * Refuses a database whose schema is newer than this code (a downgrade would misread it).
 */
export async function migrate(client: pg.ClientBase, schema: string, quoted: string): Promise<number[]> {
  const applied: number[] = [];
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`iot-batch-watcher:migrate:${schema}`]);
    // Not `CREATE SCHEMA IF NOT EXISTS` alone: PostgreSQL checks CREATE on the database before it looks for the
    // schema, so a role given only a pre-created schema (no CREATE on the database) would be refused.
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoted}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${quoted}.migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`,
    );
    const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${quoted}.migrations`);
    const have = new Set(rows.map((r) => Number(r.version)));
    const newest = Math.max(0, ...have);
    if (newest > SCHEMA_VERSION) {
      throw new Error(
        `schema ${schema} is at version ${newest}, newer than this iot-batch-watcher knows (${SCHEMA_VERSION}): upgrade it`,
      );
    }
    for (const m of MIGRATIONS) {
      if (have.has(m.version)) continue;
      for (const statement of m.statements(quoted)) await client.query(statement);
      await client.query(`INSERT INTO ${quoted}.migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return applied;
}
