/**
 * `iot-batch-watcher validate [--config FILE]` (DESIGN.md §7): checks the file, prints every problem, exits 0 or 2.
 *
 * The problems are the command's data, so they go to stdout, one `file:line:col: path: message` per line;
 * on success stdout gets `config OK: N batches`. Usage errors and the closing count go to stderr.
 * The config holds no secrets (DESIGN.md §6), and no message echoes an environment value.
 */

import { ConfigError, formatConfigIssues } from '../errors.js';
import { resolveConfigPath } from './env.js';
import { loadConfigFile } from './load.js';

/** Where the command writes, and what it reads. */
export interface ValidateCommandIo {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  /** Reads `IBW_CONFIG`. */
  env: Record<string, string | undefined>;
  /** Base of a relative `--config` and of relative paths in the file. */
  cwd: string;
}

/** Exit code of a valid file. */
export const EXIT_OK = 0;
/** Exit code of bad usage or an invalid file (DESIGN.md §7). */
export const EXIT_USAGE = 2;

const USAGE = 'usage: iot-batch-watcher validate [--config FILE]\n';

/**
 * Runs `validate`.
 *
 * @param argv - the arguments after `validate`, e.g. `['--config', 'config/watcher.yaml']` (`--config=FILE` works too).
 * @returns 0 when the file is valid, 2 when it is not or the arguments are wrong. Errors other than
 *   ConfigError (bugs) are rethrown for the caller's runtime-failure path (exit 1).
 */
export async function validateCommand(argv: readonly string[], io: ValidateCommandIo): Promise<number> {
  let configArg: string | undefined;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      io.stdout.write(USAGE);
      return EXIT_OK;
    }
    if (arg === '--config' && i + 1 < argv.length) {
      configArg = argv[i + 1];
      i += 1;
    } else if (arg.startsWith('--config=')) {
      configArg = arg.slice('--config='.length);
    } else {
      const why = arg === '--config' ? '--config needs a FILE' : `unknown argument ${JSON.stringify(arg)}`;
      io.stderr.write(`${why}\n${USAGE}`);
      return EXIT_USAGE;
    }
  }
  const file = resolveConfigPath(configArg, io.env);
  try {
    const config = await loadConfigFile(file, { env: io.env, cwd: io.cwd });
    const n = config.batches.length;
    io.stdout.write(`config OK: ${n} ${n === 1 ? 'batch' : 'batches'}\n`);
    return EXIT_OK;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stdout.write(`${formatConfigIssues(err.issues)}\n`);
    const n = err.issues.length;
    io.stderr.write(`${file}: ${n} ${n === 1 ? 'problem' : 'problems'}\n`);
    return EXIT_USAGE;
  }
}
