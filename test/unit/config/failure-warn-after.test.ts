import { describe, expect, it } from 'vitest';

import { parseConfigText } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';

const compile = (text: string) => parseConfigText(text, 'watcher.yaml', { cwd: '/srv', env: {} });

describe('alibaba.failureWarnAfter', () => {
  it('defaults to 60s and takes a duration or milliseconds', () => {
    expect(compile('alibaba:\n  regionId: cn-shanghai\n').alibaba.failureWarnAfterMs).toBe(60_000);
    expect(compile('alibaba:\n  regionId: cn-shanghai\n  failureWarnAfter: 2s\n').alibaba.failureWarnAfterMs).toBe(2_000);
    expect(compile('alibaba:\n  regionId: cn-shanghai\n  failureWarnAfter: 1500\n').alibaba.failureWarnAfterMs).toBe(1_500);
  });

  it('refuses zero and non-durations with the key and position', () => {
    for (const bad of ['0', 'soon', '-1s']) {
      let issues: string[] = [];
      try {
        compile(`alibaba:\n  regionId: cn-shanghai\n  failureWarnAfter: ${bad}\n`);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        issues = err.issues.map((i) => `${i.line}:${i.col}: ${i.path}`);
      }
      expect(issues, bad).toEqual(['3:21: alibaba.failureWarnAfter']);
    }
  });
});
