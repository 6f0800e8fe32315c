/**
 * `iot-batch-watcher validate [--config FILE] [--no-env]` (DESIGN.md §7): checks the file, prints every problem,
 * exits 0 or 2. It also checks the environment the way `run` needs it (credentials, the webhook secret, LOG_LEVEL,
 * LOG_FORMAT, IBW_HTTP_LISTEN, IBW_CONFIG_MAX_BYTES), so that it says OK only when `run` would start; `--no-env`
 * checks the file alone, away from its deployment.
 *
 * The problems are the command's data, so they go to stdout, one `file:line:col: path: message` per line;
 * on success stdout gets `config OK: N batches`. Usage errors and the closing count go to stderr.
 * The config holds no secrets (DESIGN.md §6), and no message echoes an environment value.
 */

import { ConfigError, formatConfigIssues } from '../errors.js';
import { resolveConfigPath } from './env.js';
import { checkEnvironment } from './env-overrides.js';
import { loadConfigFile } from './load.js';

/** Where the command writes, and what it reads. */
export interface ValidateCommandIo {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  /** Reads `IBW_CONFIG`, and is checked as `run` would use it (unless `--no-env`). */
  env: Record<string, string | undefined>;
  /** Base of a relative `--config` and of relative paths in the file. */
  cwd: string;
}

/** Exit code of a valid file. */
export const EXIT_OK = 0;
/** Exit code of bad usage or an invalid file (DESIGN.md §7). */
export const EXIT_USAGE = 2;

const USAGE = 'usage: iot-batch-watcher validate [--config FILE] [--no-env]\n';

/**
 * Runs `validate`.
 *
 * @param argv - the arguments after `validate`, e.g. `['--config', 'config/watcher.yaml']` (`--config=FILE` works too).
 * @returns 0 when the file is valid, 2 when it is not or the arguments are wrong. Errors other than
 *   ConfigError (bugs) are rethrown for the caller's runtime-failure path (exit 1).
 */
export async function validateCommand(argv: readonly string[], io: ValidateCommandIo): Promise<number> {
  let configArg: string | undefined;
  let checkEnv = true;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      io.stdout.write(USAGE);
      return EXIT_OK;
    }
    if (arg === '--no-env') {
      checkEnv = false;
    } else if (arg === '--config' && i + 1 < argv.length) {
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
    const config = await loadConfigFile(file, { env: checkEnv ? io.env : {}, cwd: io.cwd });
    const envIssues = checkEnv ? checkEnvironment(config, io.env) : [];
    if (envIssues.length > 0) throw new ConfigError(envIssues);
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
