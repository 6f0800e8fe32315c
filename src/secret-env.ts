/**
 * A secret from the environment: `NAME`, or the content of the file named by `NAME_FILE` (Docker and Kubernetes
 * secrets). One rule for every secret the process reads by name (DESIGN.md §6).
 *
 * NOTE: a minimal version made on the config branch for `validate`'s environment checks; helper "client" owns the
 * shared one with the same signature.
 */
import { readFileSync } from 'node:fs';

import { DaemonError } from './errors.js';

/**
 * Reads `NAME` or `NAME_FILE` (trimmed; empty counts as unset).
 *
 * @returns the secret, or undefined when neither is set (or the file is empty).
 * @throws DaemonError (kind `config`, scope `process`) when both are set or the file cannot be read. Messages name
 *   the variables and the path, never the value.
 */
export function readEnvSecret(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const direct = env[name]?.trim();
  const file = env[`${name}_FILE`]?.trim();
  if (direct && file) {
    throw new DaemonError(`set ${name} or ${name}_FILE, not both`, { kind: 'config', scope: 'process', code: 'SecretConflict' });
  }
  if (direct) return direct;
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
