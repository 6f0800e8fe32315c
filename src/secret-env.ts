/**
 * Secrets from the environment: `NAME`, or the contents of the file named by `NAME_FILE` (Kubernetes and
 * Docker secrets). Values are trimmed. Never logs the value.
 */
import { readFileSync } from 'node:fs';

import { DaemonError } from './errors.js';

/**
 * Reads `NAME` or `NAME_FILE` (trimmed). Undefined when neither is set (or the value is empty). Throws
 * `DaemonError{kind:'config', scope:'process'}` when both are set or the file cannot be read.
 */
export function readEnvSecret(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const direct = env[name];
  const filePath = env[`${name}_FILE`];
  const hasDirect = direct !== undefined && direct !== '';
  const hasFile = filePath !== undefined && filePath !== '';
  if (hasDirect && hasFile) {
    throw new DaemonError(`both ${name} and ${name}_FILE are set: set only one`, {
      kind: 'config',
      scope: 'process',
      code: 'SecretEnvConflict',
    });
  }
  if (hasFile) {
    let text: string;
    try {
      text = readFileSync(filePath, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new DaemonError(`cannot read ${name}_FILE (${filePath}): ${code}`, {
        kind: 'config',
        scope: 'process',
        code: 'SecretEnvUnreadable',
      });
    }
    const value = text.trim();
    return value === '' ? undefined : value;
  }
  if (!hasDirect) return undefined;
  const value = direct.trim();
  return value === '' ? undefined : value;
}
