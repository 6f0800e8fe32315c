/**
 * A secret from the environment: `NAME`, or the file named by `NAME_FILE` (Docker and Kubernetes secrets).
 * The one reader of this convention for the composition root (DESIGN.md §6).
 */
import { readFileSync } from 'node:fs';

import { DaemonError } from './errors.js';

/**
 * The secret in `NAME`, or the trimmed content of the file named by `NAME_FILE`; undefined when neither is set
 * (or the file is empty). Throws a config `DaemonError` when both are set or the file cannot be read.
 */
export function readEnvSecret(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (direct && file) {
    throw new DaemonError(`set ${name} or ${name}_FILE, not both`, { kind: 'config', scope: 'process', code: 'SecretEnvConflict' });
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
