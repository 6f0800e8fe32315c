import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { applyEnvOverrides, checkEnvironment } from '../../../src/config/env-overrides.js';
import { parseConfigText } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';

const CREDS = { ALIBABA_CLOUD_ACCESS_KEY_ID: 'id', ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'top-secret-value' };
const plain = parseConfigText('alibaba: { regionId: cn-shanghai }\n', 'w.yaml', { cwd: '/w', env: {} });
const withHook = parseConfigText('alibaba: { regionId: cn-shanghai }\noutput: { webhook: { url: "https://hooks.example.com/x" } }\n', 'w.yaml', {
  cwd: '/w',
  env: {},
});

const lines = (issues: { file: string; path: string; message: string }[]) => issues.map((i) => `${i.file}: ${i.path}: ${i.message}`);

describe('IBW_HTTP_LISTEN follows the rule of http.listen', () => {
  it('accepts what the file accepts', () => {
    expect(applyEnvOverrides(plain, { IBW_HTTP_LISTEN: '0.0.0.0:9464' }).http.listen).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(applyEnvOverrides(plain, { IBW_HTTP_LISTEN: '[::1]:80' }).http.listen).toEqual({ host: '::1', port: 80 });
    expect(applyEnvOverrides(plain, { IBW_HTTP_LISTEN: 'off' }).http.listen).toBeNull();
    expect(applyEnvOverrides(plain, {})).toBe(plain);
  });

  it('refuses what the file refuses (the old regex let these through)', () => {
    for (const bad of ['999.1.1.1:99999', 'bad host:80', '-x:80', '[nohost]:80', ':80', 'host:']) {
      let err: unknown;
      try {
        applyEnvOverrides(plain, { IBW_HTTP_LISTEN: bad });
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).issues[0]).toMatchObject({ file: 'env', path: 'IBW_HTTP_LISTEN' });
      expect(() => parseConfigText(`alibaba: { regionId: cn-shanghai }\nhttp: { listen: "${bad}" }\n`, 'w.yaml', { env: {} }), bad).toThrow(ConfigError);
    }
  });
});

describe('checkEnvironment: what would stop run', () => {
  it('is empty for a complete environment', () => {
    expect(checkEnvironment(plain, CREDS)).toEqual([]);
    expect(checkEnvironment(withHook, { ...CREDS, IBW_WEBHOOK_SECRET: 's' })).toEqual([]);
  });

  it('names missing credentials, a missing webhook secret and bad overrides, never a secret value', () => {
    const issues = lines(checkEnvironment(withHook, { LOG_LEVEL: 'bogus', IBW_HTTP_LISTEN: '999.1.1.1:99999', ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'top-secret-value' }));
    expect(issues).toEqual([
      expect.stringMatching(/^env: LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal, silent, got `"bogus"`/),
      expect.stringMatching(/^env: IBW_HTTP_LISTEN: expected "host:port" \(port 0 to 65535, IPv6 in brackets\) or "off", got `"999\.1\.1\.1:99999"`/),
      expect.stringMatching(/^env: ALIBABA_CLOUD_ACCESS_KEY_\*: Alibaba Cloud credentials missing: set ALIBABA_CLOUD_ACCESS_KEY_ID \(or ALIBABA_CLOUD_ACCESS_KEY_ID_FILE\)/),
      'env: IBW_WEBHOOK_SECRET: output.webhook is set but neither IBW_WEBHOOK_SECRET nor IBW_WEBHOOK_SECRET_FILE (output.webhook.secretEnv) holds a secret',
    ]);
    expect(issues.join('\n')).not.toContain('top-secret-value');
  });

  it('reports unreadable *_FILE secrets, and skips credentials in chain mode', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ibw-envcheck-'));
    writeFileSync(path.join(dir, 'id'), 'id\n');
    const issues = lines(
      checkEnvironment(withHook, {
        ALIBABA_CLOUD_ACCESS_KEY_ID_FILE: path.join(dir, 'id'),
        ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE: path.join(dir, 'missing'),
        IBW_WEBHOOK_SECRET_FILE: path.join(dir, 'nope'),
      }),
    );
    expect(issues).toHaveLength(2);
    expect(issues[0]).toMatch(/ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE/);
    expect(issues[1]).toMatch(/^env: IBW_WEBHOOK_SECRET: cannot read IBW_WEBHOOK_SECRET_FILE/);
    const chain = parseConfigText('alibaba: { regionId: cn-shanghai, credentials: chain }\n', 'w.yaml', { cwd: '/w', env: {} });
    expect(checkEnvironment(chain, {})).toEqual([]);
  });
});
