/**
 * `iot-batch-watcher --version` (also `-V`, `version`): the version of package.json.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's version, from the package.json beside src/ (or dist/). */
export function packageVersion(): string {
  // src/commands/version.ts or dist/commands/version.js → two levels up
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}
