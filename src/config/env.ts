/**
 * Environment overrides of DESIGN.md §2: `IBW_CONFIG` chooses the file, `LOG_LEVEL` and `LOG_FORMAT` the logging.
 * Pure functions over an injected env record; `main.ts` passes `process.env`.
 */

import { ConfigError } from '../errors.js';
import type { ConfigIssue } from '../errors.js';
import { expectedGot } from './describe.js';

/** The file read when neither `--config` nor `IBW_CONFIG` is given. */
export const DEFAULT_CONFIG_PATH = 'config/watcher.yaml';

/** pino levels accepted in `LOG_LEVEL`. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
/** Values of `LOG_FORMAT`. */
export const LOG_FORMATS = ['json', 'pretty'] as const;

/** A pino level name (or `silent`). */
export type LogLevel = (typeof LOG_LEVELS)[number];
/** `json`: one JSON object per line; `pretty`: pino-pretty, for humans. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Result of {@link resolveLogSettings}. */
export interface LogSettings {
  /** @default 'info' */
  level: LogLevel;
  /** @default 'json' */
  format: LogFormat;
}

/**
 * The configuration file to read: `--config` if given, else `IBW_CONFIG` if set and non-empty, else
 * {@link DEFAULT_CONFIG_PATH}. Returned as given (relative paths are resolved by the loader against its cwd).
 */
export function resolveConfigPath(argvPath: string | undefined, env: Readonly<Record<string, string | undefined>>): string {
  if (argvPath !== undefined && argvPath !== '') return argvPath;
  const fromEnv = env.IBW_CONFIG;
  if (fromEnv !== undefined && fromEnv.trim() !== '') return fromEnv;
  return DEFAULT_CONFIG_PATH;
}

function pick<T extends string>(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  allowed: readonly T[],
  fallback: T,
  issues: ConfigIssue[],
): T {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = raw.trim().toLowerCase();
  if ((allowed as readonly string[]).includes(value)) return value as T;
  issues.push({ file: 'env', line: 0, col: 0, path: name, message: expectedGot(`one of ${allowed.join(', ')}`, raw) });
  return fallback;
}

/**
 * Reads `LOG_LEVEL` (trace … fatal or silent, default info) and `LOG_FORMAT` (json or pretty, default json).
 * Case and surrounding spaces are ignored; empty means unset.
 *
 * @throws ConfigError with one issue per bad variable (file `env`, line 0, col 0, path = the variable name).
 */
export function resolveLogSettings(env: Readonly<Record<string, string | undefined>>): LogSettings {
  const issues: ConfigIssue[] = [];
  const level = pick(env, 'LOG_LEVEL', LOG_LEVELS, 'info', issues);
  const format = pick(env, 'LOG_FORMAT', LOG_FORMATS, 'json', issues);
  if (issues.length > 0) throw new ConfigError(issues);
  return { level, format };
}
