/**
 * The one reading of a secret from the environment (issue #12): `NAME`, or `NAME_FILE` (a path whose content is
 * the secret: Kubernetes and Docker secrets), trimmed. Used for the AccessKey variables (alibaba/credentials.ts)
 * and the webhook secret. Messages name variables and paths, never a value.
 */
import { readFileSync } from 'node:fs';

import { DaemonError } from './errors.js';

/** The error codes a caller reports (docs/operations.md, "The daemon's own errors"). */
export interface SecretEnvCodes {
  /** Both `NAME` and `NAME_FILE` are set. */
  conflict: { code: string };
  /** `NAME_FILE` cannot be read. */
  unreadable: { code: string };
}

/** The codes each caller uses; `generic` is the default. */
export const SECRET_ENV_CODES = Object.freeze({
  generic: { conflict: { code: 'SecretConflict' }, unreadable: { code: 'SecretFileUnreadable' } },
  credentials: { conflict: { code: 'CredentialsConflict' }, unreadable: { code: 'CredentialsFileUnreadable' } },
  webhook: { conflict: { code: 'WebhookSecretConflict' }, unreadable: { code: 'WebhookSecretFileUnreadable' } },
} satisfies Record<string, SecretEnvCodes>);

export interface ReadEnvSecretOptions {
  /** @default SECRET_ENV_CODES.generic */
  codes?: SecretEnvCodes;
  /** Reads a `NAME_FILE` path. @default fs.readFileSync(path, 'utf8') */
  readFile?: (path: string) => string;
}

/**
 * `env[name]`, or the content of the file `env[name + '_FILE']`, trimmed; undefined when neither is set or the
 * value is empty after trimming. Throws a `DaemonError` (`kind: 'config'`, `scope: 'process'`) when both are set
 * or the file cannot be read.
 */
export function readEnvSecret(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  options: ReadEnvSecretOptions = {},
): string | undefined {
  const codes = options.codes ?? SECRET_ENV_CODES.generic;
  const direct = env[name];
  const filePath = env[`${name}_FILE`];
  const hasDirect = direct !== undefined && direct !== '';
  const hasFile = filePath !== undefined && filePath !== '';
  if (hasDirect && hasFile) {
    throw new DaemonError(`both ${name} and ${name}_FILE are set; set only one`, { kind: 'config', scope: 'process', code: codes.conflict.code });
  }
  let value: string;
  if (hasFile) {
    try {
      value = (options.readFile ?? ((p: string) => readFileSync(p, 'utf8')))(filePath);
    } catch (err) {
      const reason = (err as { code?: unknown } | null)?.code;
      throw new DaemonError(`cannot read ${name}_FILE (${filePath})${typeof reason === 'string' ? `: ${reason}` : ''}`, {
        kind: 'config',
        scope: 'process',
        code: codes.unreadable.code,
        cause: err,
      });
    }
  } else if (hasDirect) {
    value = direct;
  } else {
    return undefined;
  }
  const trimmed = value.trim();
  return trimmed === '' ? undefined : trimmed;
}
