/**
 * Connecting to PostgreSQL (DESIGN.md §12): `pg` is imported only when the postgres backend is chosen, the URL
 * comes from the environment variable named by `state.postgres.urlEnv` (or `<NAME>_FILE`), and the standard
 * `PG*` variables fill what the URL leaves out (pg reads them itself). The password never reaches a message:
 * every error that leaves this module is a {@link DaemonError} whose text went through {@link redactor}.
 */
import { readFile } from 'node:fs/promises';

import type pg from 'pg';

import type { PostgresSslConfig } from '../config/types.js';
import { DaemonError } from '../errors.js';
import { readEnvSecret } from '../secret-env.js';

/** The `pg` module, loaded on first use. */
export type PgModule = typeof pg;

let pgModule: Promise<PgModule> | undefined;

/** Imports `pg` (once). The file backend never calls this, so it never loads the driver. */
export function loadPg(): Promise<PgModule> {
  pgModule ??= import('pg').then((m) => ((m as { default?: PgModule }).default ?? (m as unknown as PgModule)));
  return pgModule;
}

/** pg's TLS option (false, or node:tls options). */
export type PgSsl = pg.ClientConfig['ssl'];

/**
 * pg's TLS option for `state.postgres.ssl`, with libpq's meaning of the modes (pg 8 itself reads a URL's
 * `sslmode=require` as verify-full):
 * - `disable`: no TLS.
 * - `require`: TLS; without `caFile` the certificate is not checked (encryption only, libpq's `require`); with
 *   `caFile` the chain is checked against it but not the host name (libpq's `require` with a root certificate,
 *   i.e. `verify-ca`).
 * - `verify-full`: TLS; chain (against `caFile`, else the system CAs) and host name checked. What RDS wants.
 *
 * `caFile` is read here; a file that cannot be read is a config error naming the key and the path.
 */
export async function pgSslOptions(
  settings: PostgresSslConfig,
  read: (file: string) => Promise<string> = (file) => readFile(file, 'utf8'),
): Promise<PgSsl> {
  if (settings.mode === 'disable') return false;
  let ca: string | undefined;
  if (settings.caFile !== undefined) {
    try {
      ca = await read(settings.caFile);
    } catch (err) {
      throw new DaemonError(
        `state.postgres.ssl.caFile: cannot read ${settings.caFile}: ${err instanceof Error ? err.message : String(err)}`,
        { kind: 'config', scope: 'process', code: 'InvalidOption' },
      );
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
      throw new DaemonError(`state.postgres.ssl.caFile: ${settings.caFile} holds no PEM certificate`, {
        kind: 'config',
        scope: 'process',
        code: 'InvalidOption',
      });
    }
  }
  if (settings.mode === 'require') {
    return ca === undefined ? { rejectUnauthorized: false } : { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  }
  return ca === undefined ? { rejectUnauthorized: true } : { ca, rejectUnauthorized: true };
}

/** The URL query parameters through which pg configures TLS; they are dropped when `state.postgres.ssl` is set. */
export const URL_SSL_PARAMS = ['ssl', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'uselibpqcompat'] as const;

/**
 * The connection URL without its TLS parameters, and which were there. pg lets a URL's `sslmode`/`sslrootcert`
 * override an explicit `ssl` option; `state.postgres.ssl`, when set, must win, so they go. A string that is not
 * a `postgres://` URL is returned as it is.
 */
export function withoutUrlSsl(connectionString: string): { url: string; removed: string[] } {
  if (!/^postgres(ql)?:/i.test(connectionString)) return { url: connectionString, removed: [] };
  let parsed: URL;
  try {
    parsed = new URL(connectionString);
  } catch {
    return { url: connectionString, removed: [] };
  }
  const removed = URL_SSL_PARAMS.filter((name) => parsed.searchParams.has(name));
  if (removed.length === 0) return { url: connectionString, removed: [] };
  for (const name of removed) parsed.searchParams.delete(name);
  return { url: parsed.toString(), removed: [...removed] };
}

/** A schema name we create and quote ourselves: lower-case identifier, at most 63 bytes. */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** `"schema"`, after checking the name (it is interpolated into SQL). */
export function quoteSchema(schema: string): string {
  if (!SCHEMA_NAME.test(schema)) {
    throw new DaemonError(`invalid PostgreSQL schema name "${schema}": expected ${SCHEMA_NAME.source}`, {
      kind: 'config',
      scope: 'process',
      code: 'InvalidSchema',
    });
  }
  return `"${schema}"`;
}

/**
 * The connection string from `urlEnv` (or `<urlEnv>_FILE`). Undefined when neither is set: pg then connects
 * from the `PG*` variables alone (PGHOST, PGUSER, PGPASSWORD, PGSSLMODE...).
 */
export function connectionStringFromEnv(env: Readonly<Record<string, string | undefined>>, urlEnv: string): string | undefined {
  return readEnvSecret(env, urlEnv);
}

/** The secrets a message must never show: the URL's password (raw and decoded) and PGPASSWORD. */
export function secretsOf(connectionString: string | undefined, env: Readonly<Record<string, string | undefined>> = {}): string[] {
  const secrets = new Set<string>();
  if (connectionString !== undefined) {
    try {
      const url = new URL(connectionString);
      if (url.password !== '') {
        secrets.add(url.password);
        secrets.add(decodeURIComponent(url.password));
      }
    } catch {
      // Not a URL (a libpq key=value string): hide the whole thing's password= value.
      const match = /password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/i.exec(connectionString);
      if (match?.[1]) secrets.add(match[1].replace(/^'|'$/g, ''));
    }
  }
  const pgPassword = env.PGPASSWORD;
  if (pgPassword !== undefined && pgPassword !== '') secrets.add(pgPassword);
  return [...secrets].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
}

/** Replaces every secret (and any `scheme://user:password@` userinfo) in a text with `***`. */
export function redactor(secrets: readonly string[]): (text: string) => string {
  return (text) => {
    let out = text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@');
    for (const secret of secrets) out = out.split(secret).join('***');
    return out;
  };
}

/** PostgreSQL error fields worth keeping (none of them holds the password). */
function pgFields(err: unknown): { code: string | undefined; message: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { code: typeof code === 'string' ? code : undefined, message: err.message };
  }
  return { code: undefined, message: String(err) };
}

/**
 * A store error for a failed database call, with a redacted message and no raw `cause` (the driver's error
 * objects can carry connection parameters). `code` is the SQLSTATE or errno when there is one.
 */
export function databaseError(action: string, err: unknown, redact: (text: string) => string): DaemonError {
  if (err instanceof DaemonError) return err;
  const { code, message } = pgFields(err);
  return new DaemonError(redact(`PostgreSQL: cannot ${action}: ${message}${code ? ` (${code})` : ''}`), {
    kind: 'store',
    scope: 'attempt',
    code: code ?? 'DatabaseError',
  });
}

/** What {@link createPool} needs. */
export interface PoolSettings {
  connectionString?: string;
  ssl?: PgSsl;
  /** @default 4 */
  poolSize?: number;
  /** @default 10000 */
  connectTimeoutMs?: number;
}

/**
 * A pool for the ledger. Throws `InvalidDatabaseUrl` (redacted) for a URL that does not parse: pg parses it
 * only when it connects, and throws from inside the pool.
 */
export async function createPool(settings: PoolSettings, redact: (text: string) => string): Promise<pg.Pool> {
  const { Pool } = await loadPg();
  try {
    if (settings.connectionString !== undefined && /^postgres(ql)?:/i.test(settings.connectionString)) {
      new URL(settings.connectionString);
    }
    return new Pool({
      ...(settings.connectionString === undefined ? {} : { connectionString: settings.connectionString }),
      ...(settings.ssl === undefined ? {} : { ssl: settings.ssl }),
      max: settings.poolSize ?? 4,
      application_name: 'iot-batch-watcher',
      // A database that does not answer must fail a call, not hang it (the caller retries); keepalive notices a
      // dead peer after a partition.
      connectionTimeoutMillis: settings.connectTimeoutMs ?? 10_000,
      keepAlive: true,
    });
  } catch (err) {
    throw new DaemonError(redact(`the PostgreSQL connection URL is not valid: ${err instanceof Error ? err.message : String(err)}`), {
      kind: 'config',
      scope: 'process',
      code: 'InvalidDatabaseUrl',
    });
  }
}

/**
 * A single connection for the commands (`results`, `provision resolve`), with the same redaction. The caller ends it.
 */
export async function connectPostgres(
  connectionString: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
  ssl?: PgSsl,
): Promise<{ client: pg.Client; redact: (text: string) => string }> {
  const redact = redactor(secretsOf(connectionString, env));
  const { Client } = await loadPg();
  let client: pg.Client;
  try {
    if (connectionString !== undefined && /^postgres(ql)?:/i.test(connectionString)) new URL(connectionString);
    client = new Client({
      ...(connectionString === undefined ? {} : { connectionString }),
      ...(ssl === undefined ? {} : { ssl }),
      application_name: 'iot-batch-watcher',
    });
  } catch (err) {
    throw new DaemonError(redact(`the PostgreSQL connection URL is not valid: ${err instanceof Error ? err.message : String(err)}`), {
      kind: 'config',
      scope: 'process',
      code: 'InvalidDatabaseUrl',
    });
  }
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw databaseError('connect', err, redact);
  }
  return { client, redact };
}
