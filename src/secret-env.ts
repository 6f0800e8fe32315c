/**
 * Secrets from the environment, the Docker/Kubernetes way: `NAME` holds the value, or `NAME_FILE` names a file that
 * holds it (trimmed). Setting both is an error, so a stale variable never silently wins over a mounted secret.
 */
import { readFileSync } from 'node:fs';

import { DaemonError } from './errors.js';

/**
 * The secret in `NAME`, or in the file named by `NAME_FILE` (trimmed); undefined when neither is set (or empty).
 * Throws a DaemonError (kind `config`, scope `process`) when both are set or the file cannot be read; the message
 * names the variables and the path, never the value.
 */
export function readEnvSecret(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (direct && file) {
    throw new DaemonError(`set ${name} or ${name}_FILE, not both`, { kind: 'config', scope: 'process', code: 'SecretConflict' });
  }
  if (direct) return direct.trim() || undefined;
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch (err) {
    throw new DaemonError(`cannot read ${name}_FILE (${file}): ${(err as NodeJS.ErrnoException).code ?? 'error'}`, {
      kind: 'config',
      scope: 'process',
      code: 'SecretFileUnreadable',
      cause: err,
    });
  }
}
