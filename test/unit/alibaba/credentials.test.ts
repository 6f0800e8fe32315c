import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { createChainCredentials, createEnvCredentials } from '../../../src/alibaba/credentials.js';
import { DaemonError } from '../../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'ibw-creds-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

function thrown(fn: () => unknown): DaemonError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DaemonError);
    return err as DaemonError;
  }
  throw new Error('expected a throw');
}

describe('createEnvCredentials', () => {
  it('reads the AccessKey pair from the environment (no token → null)', async () => {
    const p = createEnvCredentials({ ALIBABA_CLOUD_ACCESS_KEY_ID: 'id1', ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'secret1' });
    expect(await p.get()).toEqual({ accessKeyId: 'id1', accessKeySecret: 'secret1', securityToken: null });
  });

  it('reads STS token and *_FILE variants, trimming file content', async () => {
    const p = createEnvCredentials({
      ALIBABA_CLOUD_ACCESS_KEY_ID: 'id2',
      ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE: file('secret', '  file-secret\n'),
      ALIBABA_CLOUD_SECURITY_TOKEN_FILE: file('token', 'sts-token\r\n'),
    });
    expect(await p.get()).toEqual({ accessKeyId: 'id2', accessKeySecret: 'file-secret', securityToken: 'sts-token' });
  });

  it('missing credentials → config error naming every missing variable and its _FILE form', () => {
    const err = thrown(() => createEnvCredentials({ ALIBABA_CLOUD_ACCESS_KEY_ID: 'id' }));
    expect(err).toMatchObject({ kind: 'config', scope: 'process', code: 'CredentialsMissing' });
    expect(err.message).toContain('ALIBABA_CLOUD_ACCESS_KEY_SECRET (or ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE)');
    expect(err.message).not.toContain('ALIBABA_CLOUD_ACCESS_KEY_ID (or');

    const none = thrown(() => createEnvCredentials({}));
    expect(none.message).toContain('ALIBABA_CLOUD_ACCESS_KEY_ID');
    expect(none.message).toContain('ALIBABA_CLOUD_ACCESS_KEY_SECRET');
  });

  it('empty values and empty files count as missing', () => {
    expect(
      thrown(() =>
        createEnvCredentials({ ALIBABA_CLOUD_ACCESS_KEY_ID: '  ', ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE: file('empty', '\n') }),
      ).code,
    ).toBe('CredentialsMissing');
  });

  it('a variable set both directly and as _FILE is an error', () => {
    const err = thrown(() =>
      createEnvCredentials({
        ALIBABA_CLOUD_ACCESS_KEY_ID: 'id',
        ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'direct-secret',
        ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE: file('s2', 'x'),
      }),
    );
    expect(err).toMatchObject({ kind: 'config', code: 'CredentialsConflict' });
    expect(err.message).toContain('ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE');
    expect(err.message).not.toContain('direct-secret');
  });

  it('an unreadable _FILE names the variable and path, not content', () => {
    const missing = join(dir, 'does-not-exist');
    const err = thrown(() =>
      createEnvCredentials({ ALIBABA_CLOUD_ACCESS_KEY_ID: 'id', ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE: missing }),
    );
    expect(err.code).toBe('CredentialsFileUnreadable');
    expect(err.message).toContain('ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE');
    expect(err.message).toContain(missing);
  });
});

describe('createChainCredentials', () => {
  it('is lazy: nothing is loaded until get(), then loaded once', async () => {
    let loads = 0;
    let calls = 0;
    const provider = createChainCredentials({
      load: () => {
        loads += 1;
        return Promise.resolve({
          getCredential: () => {
            calls += 1;
            return Promise.resolve({ accessKeyId: 'cid', accessKeySecret: 'csecret', securityToken: '' });
          },
        });
      },
    });
    expect(loads).toBe(0);
    expect(await provider.get()).toEqual({ accessKeyId: 'cid', accessKeySecret: 'csecret', securityToken: null });
    await provider.get();
    expect(loads).toBe(1);
    expect(calls).toBe(2);
  });

  it('the default construction does not load or contact anything', () => {
    // Constructing only; get() would run the real chain, which tests must never do.
    expect(typeof createChainCredentials().get).toBe('function');
  });

  it('an answer without an AccessKey pair is a process-fatal auth error', async () => {
    const provider = createChainCredentials({ load: () => Promise.resolve({ getCredential: () => Promise.resolve({}) }) });
    await expect(provider.get()).rejects.toMatchObject({ kind: 'auth', scope: 'process', code: 'CredentialsMissing' });
  });
});
