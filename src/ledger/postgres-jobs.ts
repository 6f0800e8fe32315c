/**
 * Provisioning job state in PostgreSQL (DESIGN.md §12/§13): the `provision_jobs` table holds each job's state
 * (src/provision/job-state.ts) as JSON, keyed by account and job name. It is the postgres backend's job store, so a
 * replica that takes an account over resumes its jobs where the last owner left them: a chunk whose intent was
 * saved before the owner died is recovered from that intent (a names chunk is checked again, a count chunk is
 * parked `submission_unknown`), never submitted blindly a second time.
 *
 * - The owner's saves are upserts fenced by the account's lease, like every write of the owner: a replica that has
 *   lost the lease cannot record an intent, so it cannot go on to send the submission either.
 * - `readPostgresJobStates` is for the commands (`status --jobs`, `results --provision`): read-only, no lease; a
 *   schema that was never migrated (or predates the table) has no jobs.
 * - `updatePostgresJobState` is `provision resolve`'s write: the operator's answer for a parked chunk, applied to the
 *   row as it is now (read and written in one transaction holding the row), not fenced (no replica's lease is
 *   involved: the owner reads the row again at its next reload, docs/provisioning.md).
 */
import type pg from 'pg';

import { DaemonError } from '../errors.js';
import type { ListableJobStore } from '../provision/daemon-provisioner.js';
import { JOB_STATE_VERSION, type JobState } from '../provision/job-state.js';
import { fenceSql } from './postgres-lease.js';
import type { PostgresLedgerHandle } from './postgres-ledger.js';

/** Where a job's state is, for messages (no host, no credentials). */
export function jobLocation(quoted: string, account: string, name: string): string {
  return `postgres:${quoted.slice(1, -1)}.provision_jobs/${encodeURIComponent(account)}/${encodeURIComponent(name)}`;
}

function parseState(text: string, where: string): JobState {
  let state: { version?: unknown; name?: unknown };
  try {
    state = JSON.parse(text) as { version?: unknown };
  } catch (err) {
    throw new DaemonError(`${where}: not a job state (${err instanceof Error ? err.message : String(err)})`, { kind: 'store', scope: 'process', code: 'JobStateCorrupt' });
  }
  if (state === null || typeof state !== 'object' || state.version !== JOB_STATE_VERSION) {
    throw new DaemonError(`${where}: job state version ${JSON.stringify(state?.version)}, expected ${JOB_STATE_VERSION}`, { kind: 'store', scope: 'process', code: 'JobStateCorrupt' });
  }
  return state as JobState;
}

/** The job store of the ledger's account. */
export function createPostgresJobStore(handle: PostgresLedgerHandle): ListableJobStore {
  const table = `${handle.quoted}.provision_jobs`;
  return {
    async list() {
      try {
        const { rows } = await handle.pool.query<{ name: string }>(`SELECT name FROM ${table} WHERE account = $1 ORDER BY name`, [handle.account]);
        return rows.map((r) => r.name);
      } catch (err) {
        throw handle.dbError('list the provisioning jobs', err);
      }
    },
    async load(name) {
      let rows: { state: string }[];
      try {
        ({ rows } = await handle.pool.query<{ state: string }>(`SELECT state::text AS state FROM ${table} WHERE account = $1 AND name = $2`, [handle.account, name]));
      } catch (err) {
        throw handle.dbError('read a provisioning job', err);
      }
      const row = rows[0];
      return row === undefined ? null : parseState(row.state, jobLocation(handle.quoted, handle.account, name));
    },
    async save(state) {
      const fence = handle.requireFence();
      let rowCount: number | null;
      try {
        ({ rowCount } = await handle.pool.query(
          `WITH ${fenceSql(handle.quoted)}
           INSERT INTO ${table} (account, name, state)
           SELECT $1, $4, $5::json WHERE EXISTS (SELECT 1 FROM fence)
           ON CONFLICT (account, name) DO UPDATE SET state = EXCLUDED.state, saved_at = now()`,
          [handle.account, fence.owner, fence.epoch, state.name, JSON.stringify(state)],
        ));
      } catch (err) {
        throw handle.dbError('save a provisioning job', err);
      }
      if (rowCount !== 1) throw handle.fenceRefused('provisioning job write');
    },
  };
}

/** Whether the schema has the table yet (a schema never migrated, or migrated by a version before it, has none). */
async function hasJobsTable(client: pg.ClientBase, quoted: string): Promise<boolean> {
  const { rows } = await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`${quoted}.provision_jobs`]);
  return rows[0]?.t != null;
}

/** One stored job with its account. */
export interface StoredJob {
  account: string;
  state: JobState;
}

/** Reads stored jobs (read-only), ordered by account and name; `account` and `name` narrow the set when given. */
export async function readPostgresJobStates(client: pg.ClientBase, quoted: string, filter: { account?: string; name?: string } = {}): Promise<StoredJob[]> {
  if (!(await hasJobsTable(client, quoted))) return [];
  const where: string[] = [];
  const values: string[] = [];
  for (const [column, value] of [['account', filter.account], ['name', filter.name]] as const) {
    if (value === undefined) continue;
    values.push(value);
    where.push(`${column} = $${values.length}`);
  }
  const { rows } = await client.query<{ account: string; name: string; state: string }>(
    `SELECT account, name, state::text AS state FROM ${quoted}.provision_jobs
      ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY account, name`,
    values,
  );
  return rows.map((r) => ({ account: r.account, state: parseState(r.state, jobLocation(quoted, r.account, r.name)) }));
}

/**
 * Applies `change` to the stored state of one job, holding its row for the transaction (so a save of the owner
 * lands before or after, never in between). `change` returns the new state, or null to write nothing. Resolves
 * with what `change` returned; null also when there is no such job.
 */
export async function updatePostgresJobState(
  client: pg.ClientBase,
  quoted: string,
  account: string,
  name: string,
  change: (state: JobState | null) => JobState | null,
): Promise<JobState | null> {
  if (!(await hasJobsTable(client, quoted))) return change(null);
  await client.query('BEGIN');
  try {
    const { rows } = await client.query<{ state: string }>(
      `SELECT state::text AS state FROM ${quoted}.provision_jobs WHERE account = $1 AND name = $2 FOR UPDATE`,
      [account, name],
    );
    const row = rows[0];
    const next = change(row === undefined ? null : parseState(row.state, jobLocation(quoted, account, name)));
    if (next !== null && row !== undefined) {
      await client.query(`UPDATE ${quoted}.provision_jobs SET state = $3::json, saved_at = now() WHERE account = $1 AND name = $2`, [account, name, JSON.stringify(next)]);
    }
    await client.query('COMMIT');
    return next;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
