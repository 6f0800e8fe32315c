import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DaemonError } from '../../src/errors.js';
import { SECRET_ENV_CODES, readEnvSecret } from '../../src/secret-env.js';
import { checkUrl } from '../../src/url-rule.js';

const dir = mkdtempSync(path.join(tmpdir(), 'ibw-secret-env-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('readEnvSecret: NAME or NAME_FILE, once for every secret', () => {
  it('reads NAME or the file named by NAME_FILE, trimmed; empty counts as unset', () => {
    const file = path.join(dir, 'secret');
    writeFileSync(file, '  s3cret-from-file\n');
    expect(readEnvSecret({ HOOK: '  direct  ' }, 'HOOK')).toBe('direct');
    expect(readEnvSecret({ HOOK_FILE: file }, 'HOOK')).toBe('s3cret-from-file');
    expect(readEnvSecret({}, 'HOOK')).toBeUndefined();
    expect(readEnvSecret({ HOOK: '   ' }, 'HOOK')).toBeUndefined();
    expect(readEnvSecret({ HOOK: '', HOOK_FILE: '' }, 'HOOK')).toBeUndefined();
  });

  it('both set, or an unreadable file: a config DaemonError (scope process) naming the variables, never the value', () => {
    const both = (() => {
      try {
        readEnvSecret({ HOOK: 'value-1234', HOOK_FILE: '/x' }, 'HOOK');
      } catch (err) {
        return err;
      }
      return null;
    })();
    expect(both).toBeInstanceOf(DaemonError);
    expect(both).toMatchObject({ kind: 'config', scope: 'process', code: 'SecretConflict' });
    expect((both as Error).message).toContain('HOOK_FILE');
    expect((both as Error).message).not.toContain('value-1234');
    expect(() => readEnvSecret({ HOOK_FILE: path.join(dir, 'missing') }, 'HOOK')).toThrow(expect.objectContaining({ code: 'SecretFileUnreadable', kind: 'config', scope: 'process' }));
    expect(() => readEnvSecret({ HOOK_FILE: path.join(dir, 'missing') }, 'HOOK', { codes: SECRET_ENV_CODES.webhook })).toThrow(
      expect.objectContaining({ code: 'WebhookSecretFileUnreadable' }),
    );
    expect(() => readEnvSecret({ K: 'a', K_FILE: 'b' }, 'K', { codes: SECRET_ENV_CODES.credentials })).toThrow(expect.objectContaining({ code: 'CredentialsConflict' }));
  });
});

describe('checkUrl: the one URL rule', () => {
  it.each([
    ['https://iot.cn-shanghai.aliyuncs.com', true, null],
    ['http://127.0.0.1:8787', true, null],
    ['http://[::1]:80', true, null],
    ['http://localhost:1/hook?x=1', false, null],
    ['https://hooks.example.com/iot?token=abc', false, null],
    ['https://hooks.example.com/iot', true, 'not-origin'],
    ['http://192.168.1.10:8787', true, 'insecure'],
    ['http://127.0.0.1.nip.io', false, 'insecure'],
    ['https://user:pw@iot.example.com', true, 'credentials'],
    ['ftp://iot.example.com', false, 'scheme'],
    ['not a url', false, 'not-url'],
  ] as const)('%s (originOnly %s) → %s', (value, originOnly, kind) => {
    const r = checkUrl(value, { originOnly });
    if (kind === null) expect(r.ok).toBe(true);
    else expect(r).toMatchObject({ ok: false, kind });
  });
});
