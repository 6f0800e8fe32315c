import { describe, expect, it } from 'vitest';

import { DEFAULT_CONFIG_PATH, resolveConfigPath, resolveLogSettings } from '../../../src/config/env.js';
import { ConfigError } from '../../../src/errors.js';

describe('resolveConfigPath', () => {
  it('prefers --config, then IBW_CONFIG, then the default', () => {
    expect(resolveConfigPath('a.yaml', { IBW_CONFIG: 'b.yaml' })).toBe('a.yaml');
    expect(resolveConfigPath(undefined, { IBW_CONFIG: 'b.yaml' })).toBe('b.yaml');
    expect(resolveConfigPath(undefined, { IBW_CONFIG: '  ' })).toBe(DEFAULT_CONFIG_PATH);
    expect(resolveConfigPath(undefined, {})).toBe('config/watcher.yaml');
  });
});

describe('resolveLogSettings', () => {
  it('defaults to info and json', () => {
    expect(resolveLogSettings({})).toEqual({ level: 'info', format: 'json' });
    expect(resolveLogSettings({ LOG_LEVEL: '', LOG_FORMAT: '' })).toEqual({ level: 'info', format: 'json' });
  });

  it('accepts every pino level and both formats, ignoring case and spaces', () => {
    for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const) {
      expect(resolveLogSettings({ LOG_LEVEL: level }).level).toBe(level);
    }
    expect(resolveLogSettings({ LOG_LEVEL: ' DEBUG ', LOG_FORMAT: 'Pretty' })).toEqual({ level: 'debug', format: 'pretty' });
  });

  it('reports both bad variables at once as issues of file env, line 0', () => {
    let error: unknown;
    try {
      resolveLogSettings({ LOG_LEVEL: 'loud', LOG_FORMAT: 'xml' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(
      'env:0:0: LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal, silent, got `"loud"` (string)\n' +
        'env:0:0: LOG_FORMAT: expected one of json, pretty, got `"xml"` (string)',
    );
  });
});
