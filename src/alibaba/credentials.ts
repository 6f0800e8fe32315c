/**
 * AccessKey credentials behind one small interface (DESIGN.md §6).
 *
 * - `env` (default): `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional
 *   `ALIBABA_CLOUD_SECURITY_TOKEN` (STS), each also as `<NAME>_FILE` (a path; the file's content is trimmed).
 *   Read and checked once, at creation, so a missing credential is a start-up error naming the variables.
 * - `chain`: the official `@alicloud/credentials` default chain (profile file, RAM role, OIDC...). Loaded and
 *   constructed lazily on the first `get()`; never used in tests.
 */
import { readFileSync } from 'node:fs';

import { DaemonError } from '../errors.js';
import { SECRET_ENV_CODES, readEnvSecret } from '../secret-env.js';

/** One set of credentials. `securityToken` is non-null only for STS credentials. */
export interface Credentials {
  accessKeyId: string;
  accessKeySecret: string;
  securityToken: string | null;
}

/** Source of credentials; called before every request attempt (so rotating providers work). */
export interface CredentialsProvider {
  get(): Promise<Credentials>;
}

/** The environment variable names read by {@link createEnvCredentials}. */
export const CREDENTIAL_ENV_VARS = Object.freeze({
  accessKeyId: 'ALIBABA_CLOUD_ACCESS_KEY_ID',
  accessKeySecret: 'ALIBABA_CLOUD_ACCESS_KEY_SECRET',
  securityToken: 'ALIBABA_CLOUD_SECURITY_TOKEN',
});

export interface EnvCredentialsOptions {
  /** Reads a `*_FILE` path. @default fs.readFileSync(path, 'utf8') */
  readFile?: (path: string) => string;
  /**
   * The variables to read, for an account of `accounts` (DESIGN.md §11); `securityToken: null` reads none.
   * @default CREDENTIAL_ENV_VARS
   */
  names?: { accessKeyId: string; accessKeySecret: string; securityToken: string | null };
  /** The account the credentials are for, named in messages; absent for the one account of a file without `accounts`. */
  account?: string;
}

/**
 * Reads the credentials from `env` now (not on `get()`), and throws a `DaemonError`
 * (`kind: 'config'`, `scope: 'process'`) when they are missing (`CredentialsMissing`), set both directly and
 * as `_FILE` (`CredentialsConflict`), or a file cannot be read (`CredentialsFileUnreadable`). Messages name
 * the variables and paths, never a value.
 */
export function createEnvCredentials(
  env: Readonly<Record<string, string | undefined>>,
  options: EnvCredentialsOptions = {},
): CredentialsProvider {
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  const names = options.names ?? CREDENTIAL_ENV_VARS;
  const accessKeyId = readVar(env, names.accessKeyId, readFile);
  const accessKeySecret = readVar(env, names.accessKeySecret, readFile);
  const securityToken = names.securityToken === null ? null : readVar(env, names.securityToken, readFile);
  const missing: string[] = [];
  if (accessKeyId === null) missing.push(names.accessKeyId);
  if (accessKeySecret === null) missing.push(names.accessKeySecret);
  if (accessKeyId === null || accessKeySecret === null) {
    const set = missing.map((n) => `${n} (or ${n}_FILE)`).join(' and ');
    const message =
      options.account === undefined
        ? `Alibaba Cloud credentials missing: set ${set}; ` +
          `${CREDENTIAL_ENV_VARS.securityToken} (or ${CREDENTIAL_ENV_VARS.securityToken}_FILE) is optional, for STS. ` +
          `Or configure alibaba.credentials: chain.`
        : `Alibaba Cloud credentials of account "${options.account}" missing: set ${set} ` +
          `(the variables its credentials name), or configure its credentials as { mode: chain }.`;
    throw new DaemonError(message, { kind: 'config', scope: 'process', code: 'CredentialsMissing' });
  }
  const creds: Credentials = Object.freeze({ accessKeyId, accessKeySecret, securityToken });
  return { get: () => Promise.resolve(creds) };
}

function readVar(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  readFile: (path: string) => string,
): string | null {
  return readEnvSecret(env, name, { codes: SECRET_ENV_CODES.credentials, readFile }) ?? null;
}

/** The part of `@alicloud/credentials`' `Credential` we use. */
export interface ChainCredentialClient {
  getCredential(): Promise<{ accessKeyId?: string; accessKeySecret?: string; securityToken?: string }>;
}

export interface ChainCredentialsOptions {
  /**
   * Creates the chain client. Called once, on the first `get()`.
   * @default dynamic import of `@alicloud/credentials` and `new Credential()` (the default chain)
   */
  load?: () => Promise<ChainCredentialClient>;
}

/**
 * Wraps the official default credential chain. Nothing is imported, constructed or contacted until the first
 * `get()`; the chain itself caches and refreshes (RAM role / OIDC tokens). A chain answer without an
 * AccessKey pair throws a process-fatal `DaemonError` (`kind: 'auth'`, code `CredentialsMissing`).
 */
export function createChainCredentials(options: ChainCredentialsOptions = {}): CredentialsProvider {
  const load = options.load ?? loadDefaultChain;
  let client: Promise<ChainCredentialClient> | null = null;
  return {
    async get() {
      client ??= load();
      let c: ChainCredentialClient;
      try {
        c = await client;
      } catch (err) {
        client = null;
        throw new DaemonError('cannot load the Alibaba Cloud default credential chain', {
          kind: 'config',
          scope: 'process',
          code: 'CredentialsChainUnavailable',
          cause: err,
        });
      }
      const m = await c.getCredential();
      if (!m.accessKeyId || !m.accessKeySecret) {
        throw new DaemonError('the Alibaba Cloud default credential chain returned no AccessKey pair', {
          kind: 'auth',
          scope: 'process',
          code: 'CredentialsMissing',
        });
      }
      return { accessKeyId: m.accessKeyId, accessKeySecret: m.accessKeySecret, securityToken: m.securityToken || null };
    },
  };
}

async function loadDefaultChain(): Promise<ChainCredentialClient> {
  // NOTE: a CommonJS module compiled from TS: the class is `module.exports.default`, which Node's ESM
  // interop exposes as `default.default`.
  const mod = (await import('@alicloud/credentials')) as unknown as {
    default: { default: new () => ChainCredentialClient };
  };
  const Credential = mod.default.default;
  return new Credential();
}
