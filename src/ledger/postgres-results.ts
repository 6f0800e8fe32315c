/**
 * Results in PostgreSQL (DESIGN.md §4/§12): the `results` table is the postgres backend's result store. Each
 * row holds the full result JSON (the bytes `toResultJson` gives a result file, device secrets included when
 * `devices.includeSecrets`), keyed by account, productKey and applyId. Writes are upserts (rewriting the same
 * result is idempotent) fenced by the account's lease, like every write of the owner. `remove` withdraws the row
 * of a re-armed batch (and its file), fenced the same way.
 */
import type pg from 'pg';

import type { BatchResult, ResultWriter } from '../core/ports.js';
import { toResultJson } from '../sinks/result-writer.js';
import { fenceSql } from './postgres-lease.js';
import type { PostgresLedgerHandle } from './postgres-ledger.js';

/** Options of {@link createPostgresResultStore}. */
export interface PostgresResultStoreOptions {
  /** Keep `deviceSecret` in the stored JSON (`devices.includeSecrets`). */
  includeSecrets: boolean;
  /** Also write result files (`output.resultsDir` when set); its path is what `write` resolves with. */
  files?: ResultWriter;
}

/** Where a stored result is, for logs and the ledger's `resultFile` (no host, no credentials). */
export function resultLocation(schema: string, account: string, productKey: string, applyId: string): string {
  return `postgres:${schema}.results/${encodeURIComponent(account)}/${encodeURIComponent(productKey)}/${encodeURIComponent(applyId)}`;
}

function stripSecrets(result: BatchResult): BatchResult {
  return { ...result, devices: result.devices.map((d) => ({ deviceName: d.deviceName, iotId: d.iotId })) };
}

/** A {@link ResultWriter} into the `results` table of the ledger's schema and account. */
export function createPostgresResultStore(handle: PostgresLedgerHandle, options: PostgresResultStoreOptions): ResultWriter {
  const schema = handle.quoted.slice(1, -1);
  return {
    async write(result) {
      const stored = options.includeSecrets ? result : stripSecrets(result);
      const json = toResultJson(stored);
      const fence = handle.requireFence();
      let rowCount: number | null;
      try {
        ({ rowCount } = await handle.pool.query(
          `WITH ${fenceSql(handle.quoted)}
           INSERT INTO ${handle.quoted}.results (account, product_key, apply_id, outcome, device_count, result)
           SELECT $1, $4, $5, $6, $7, $8::json WHERE EXISTS (SELECT 1 FROM fence)
           ON CONFLICT (account, product_key, apply_id) DO UPDATE
             SET outcome = EXCLUDED.outcome, device_count = EXCLUDED.device_count, result = EXCLUDED.result, written_at = now()`,
          [handle.account, fence.owner, fence.epoch, result.productKey, result.applyId, result.outcome, result.deviceCount, json],
        ));
      } catch (err) {
        throw handle.dbError('store the result', err);
      }
      if (rowCount !== 1) throw handle.fenceRefused('result write');
      if (options.files) return options.files.write(result);
      return resultLocation(schema, handle.account, result.productKey, result.applyId);
    },
    async remove(productKey, applyId) {
      const fence = handle.requireFence();
      let rows: { held: boolean }[];
      try {
        // One statement: the fence decides whether the delete runs, and the answer says which of the two held
        // (no row to delete is fine; a refused fence is not).
        ({ rows } = await handle.pool.query<{ held: boolean }>(
          `WITH ${fenceSql(handle.quoted)},
           gone AS (DELETE FROM ${handle.quoted}.results
                     WHERE account = $1 AND product_key = $4 AND apply_id = $5 AND EXISTS (SELECT 1 FROM fence))
           SELECT EXISTS (SELECT 1 FROM fence) AS held`,
          [handle.account, fence.owner, fence.epoch, productKey, applyId],
        ));
      } catch (err) {
        throw handle.dbError('withdraw the result', err);
      }
      if (rows[0]?.held !== true) throw handle.fenceRefused('result withdrawal');
      await options.files?.remove?.(productKey, applyId);
    },
  };
}

/** Filters of {@link readPostgresResults}; each one given narrows the set. */
export interface ResultFilter {
  account?: string;
  productKey?: string;
  applyId?: string;
}

/** One stored result with its account. */
export interface StoredResult {
  account: string;
  result: BatchResult;
}

/**
 * Reads stored results, ordered by account, productKey, applyId. A schema that was never migrated has no
 * results (not an error): `results` must not create anything.
 */
export async function readPostgresResults(client: pg.ClientBase, quoted: string, filter: ResultFilter): Promise<StoredResult[]> {
  const where: string[] = [];
  const values: string[] = [];
  const add = (column: string, value: string | undefined): void => {
    if (value === undefined) return;
    values.push(value);
    where.push(`${column} = $${values.length}`);
  };
  add('account', filter.account);
  add('product_key', filter.productKey);
  add('apply_id', filter.applyId);
  const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`${quoted}.results`]);
  if (exists.rows[0]?.t == null) return [];
  const { rows } = await client.query<{ account: string; result: string }>(
    `SELECT account, result::text AS result FROM ${quoted}.results
      ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY account, product_key, apply_id`,
    values,
  );
  return rows.map((r) => ({ account: r.account, result: JSON.parse(r.result) as BatchResult }));
}
