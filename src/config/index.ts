/**
 * The configuration module: YAML file → validated → CompiledConfig (see docs/configuration.md).
 */

export { compileConfigObject } from './compile.js';
export type { CompileOptions } from './compile.js';
export { DURATION_PATTERN, formatDuration, isDuration, parseDuration, tryParseDuration } from './duration.js';
export type { DurationResult } from './duration.js';
export { DEFAULT_CONFIG_PATH, LOG_FORMATS, LOG_LEVELS, resolveConfigPath, resolveLogSettings } from './env.js';
export type { LogFormat, LogLevel, LogSettings } from './env.js';
export { buildJsonSchema, renderJsonSchema } from './json-schema.js';
export { loadConfigFile, parseConfigText } from './load.js';
export type { LoadOptions } from './load.js';
export { configSchema } from './schema.js';
export type { RawConfig, RawConfigInput } from './schema.js';
export type * from './types.js';
export { validateCommand } from './validate-command.js';
export type { ValidateCommandIo } from './validate-command.js';
