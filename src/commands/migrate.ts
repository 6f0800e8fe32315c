/**
 * `iot-batch-watcher migrate --from-file DIR [--config FILE] [--account A]` (DESIGN.md §12): moves a file
 * ledger into the PostgreSQL backend named by the configuration's `state.postgres`.
 *
 * - Refuses while a daemon holds DIR: a `LOCK` file whose mtime is recent (a renewed lease) or whose pid is a
 *   live process on this host (the pid lock).
 * - Takes the account's lease for the import, so it also refuses while a postgres daemon owns the account.
 * - Idempotent: into an empty account it writes the whole state as the compacted snapshot, in one transaction;
 *   when the account already holds exactly that state it changes nothing and says so; when it holds something
 *   else it refuses (`LedgerNotEmpty`) and changes nothing.
 * - The provisioning jobs of DIR (`DIR/provision/*.json`, DESIGN.md §13) move with it, into `provision_jobs`:
 *   without them a job would start over on PostgreSQL and submit its chunks again. A job the account already holds
 *   with the same state is left alone; one it holds with another state is refused like a different ledger, before
 *   anything is written.
 * - The file ledger is only read, never changed.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { resolveConfigPath } from '../config/load.js';
import type { LedgerSnapshot } from '../core/ports.js';
import { DaemonError } from '../errors.js';
import { LOCK_FILE } from '../ledger/journal-format.js';
import { readLedgerReadOnly } from '../ledger/read-ledger.js';
import { DEFAULT_ACCOUNT, openPostgresLedger } from '../ledger/postgres-ledger.js';
import { createPostgresJobStore } from '../ledger/postgres-jobs.js';
import { DEFAULT_STATE_POSTGRES, postgresConnectSettings } from '../ledger/open-state.js';
import type { ListableJobStore } from '../provision/daemon-provisioner.js';
import { createFileJobStore } from '../provision/file-job-store.js';
import type { JobState } from '../provision/job-state.js';
import type { CommandIo } from './results.js';
import { CommandUsageError } from './results.js';

/** A LOCK touched this recently counts as held, whatever its pid says (the renewed-lease lock format). */
export const LOCK_FRESH_MS = 60_000;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Why DIR counts as held by a daemon, or null. `now` is the current time in epoch ms.
 */
export async function ledgerDirHolder(dir: string, now: number): Promise<string | null> {
  const lockPath = join(dir, LOCK_FILE);
  let mtimeMs: number;
  try {
    mtimeMs = (await stat(lockPath)).mtimeMs;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const text = await readFile(lockPath, 'utf8').catch(() => '');
  const pid = Number.parseInt(/\d+/.exec(text)?.[0] ?? '', 10);
  if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) return `${lockPath} names process ${pid}, which is running`;
  const ageMs = now - mtimeMs;
  if (ageMs < LOCK_FRESH_MS) return `${lockPath} was renewed ${Math.max(0, Math.round(ageMs / 1000))}s ago`;
  return null;
}

/** A comparable image of a state: records in Map order, as JSON. */
function image(state: LedgerSnapshot): string {
  return JSON.stringify({ batches: [...state.batches.values()], outbox: [...state.outbox.values()] });
}

/** The jobs of `from` that `into` lacks, how many it holds already as they are, and those it holds otherwise. */
async function planJobs(from: ListableJobStore, into: ListableJobStore): Promise<{ missing: JobState[]; same: number; differing: string[] }> {
  const plan = { missing: [] as JobState[], same: 0, differing: [] as string[] };
  for (const name of (await from.list()).sort()) {
    const state = await from.load(name);
    if (state === null) continue;
    const held = await into.load(name);
    if (held === null) plan.missing.push(state);
    else if (JSON.stringify(held) === JSON.stringify(state)) plan.same += 1;
    else plan.differing.push(name);
  }
  return plan;
}

/** Runs `migrate`; resolves with the exit code. */
export async function migrateCommand(args: string[], io: CommandIo & { now: () => number }): Promise<number> {
  let opts;
  try {
    opts = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: 'string', short: 'c' },
        'from-file': { type: 'string' },
        account: { type: 'string' },
      },
    }).values;
  } catch (err) {
    throw new CommandUsageError(err instanceof Error ? err.message : String(err));
  }
  const from = opts['from-file'];
  if (from === undefined || from === '') throw new CommandUsageError('migrate needs --from-file DIR (the file ledger, state.dir)');
  const dir = resolve(io.cwd, from);
  const config = await io.loadConfig(resolveConfigPath(opts.config, io.env));
  const pgConfig = config.state.postgres ?? DEFAULT_STATE_POSTGRES;
  const account = opts.account ?? DEFAULT_ACCOUNT;

  try {
    await stat(dir);
  } catch {
    io.stderr.write(`migrate: ${dir} does not exist\n`);
    return 1;
  }
  const holder = await ledgerDirHolder(dir, io.now());
  if (holder !== null) {
    io.stderr.write(`migrate: refusing: a daemon holds ${dir} (${holder}). Stop it first.\n`);
    return 1;
  }
  const state = await readLedgerReadOnly(dir);

  const ledger = await openPostgresLedger({
    ...(await postgresConnectSettings(config, io.env)),
    schema: pgConfig.schema,
    account,
    leaseMs: pgConfig.leaseMs,
    env: io.env,
  });
  try {
    const where = `schema ${pgConfig.schema}, account ${account}`;
    const jobs = createPostgresJobStore(ledger.handle);
    const plan = await planJobs(createFileJobStore(dir), jobs);
    if (plan.differing.length > 0) {
      throw new DaemonError(
        `${where} already holds provisioning jobs ${plan.differing.map((n) => JSON.stringify(n)).join(', ')} with another state than ${dir}: nothing changed`,
        { kind: 'store', scope: 'process', code: 'LedgerNotEmpty' },
      );
    }
    const importJobs = async (): Promise<string> => {
      for (const state of plan.missing) await jobs.save(state);
      return plan.missing.length > 0 ? ` and ${plan.missing.length} provisioning job${plan.missing.length === 1 ? '' : 's'}` : '';
    };
    if (await ledger.isEmpty()) {
      await ledger.importState(state);
      const moved = await importJobs();
      io.stdout.write(`migrated ${state.batches.size} batches and ${state.outbox.size} undelivered events${moved} from ${dir} into ${where}\n`);
      return 0;
    }
    if (image(await ledger.load()) === image(state)) {
      // The ledger came over before (a run cut off after it may have left jobs behind: they come now).
      const moved = await importJobs();
      io.stdout.write(
        moved === ''
          ? `already migrated: ${where} holds the same ${state.batches.size} batches and ${state.outbox.size} events; nothing changed\n`
          : `already migrated: ${where} holds the same ${state.batches.size} batches and ${state.outbox.size} events; moved${moved.replace(/^ and/, '')}\n`,
      );
      return 0;
    }
    throw new DaemonError(
      `${where} already holds a different ledger than ${dir}: nothing changed (migrate into an empty schema or account)`,
      { kind: 'store', scope: 'process', code: 'LedgerNotEmpty' },
    );
  } finally {
    await ledger.close();
  }
}
