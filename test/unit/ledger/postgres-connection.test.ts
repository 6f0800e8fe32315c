/** The database URL from the environment, and redaction of its password. No database needed. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import { databaseError, quoteSchema, redactor, secretsOf } from '../../../src/ledger/postgres-connection.js';
import { databaseUrlFromConfig, openStateBackend } from '../../../src/ledger/open-state.js';
import { readEnvSecret } from '../../../src/secret-env.js';

describe('readEnvSecret', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-secret-'));
    await writeFile(join(dir, 'url'), '  postgres://u:p@db/x \n');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads NAME or NAME_FILE, trimmed; undefined when neither or empty', () => {
    expect(readEnvSecret({ A: ' v ' }, 'A')).toBe('v');
    expect(readEnvSecret({ A_FILE: join(dir, 'url') }, 'A')).toBe('postgres://u:p@db/x');
    expect(readEnvSecret({}, 'A')).toBeUndefined();
    expect(readEnvSecret({ A: '   ' }, 'A')).toBeUndefined();
  });

  it('refuses both, and an unreadable file, as config errors that do not show the value', () => {
    expect(() => readEnvSecret({ A: 'secret-value', A_FILE: join(dir, 'url') }, 'A')).toThrow(
      expect.objectContaining({ kind: 'config', scope: 'process', code: 'SecretConflict' }),
    );
    try {
      readEnvSecret({ A: 'secret-value', A_FILE: join(dir, 'url') }, 'A');
    } catch (err) {
      expect(String(err)).not.toContain('secret-value');
    }
    expect(() => readEnvSecret({ A_FILE: join(dir, 'missing') }, 'A')).toThrow(
      expect.objectContaining({ kind: 'config', code: 'SecretFileUnreadable', message: expect.stringContaining('ENOENT') }),
    );
  });
});

describe('redaction', () => {
  it('hides the URL password (encoded and decoded), PGPASSWORD, and any userinfo password', () => {
    const url = 'postgres://ibw:p%40ss%2Fw0rd@db.example:5432/ibw?sslmode=verify-full';
    const redact = redactor(secretsOf(url, { PGPASSWORD: 'env-pw-123' }));
    expect(redact(`failed for ${url}`)).toBe('failed for postgres://ibw:***@db.example:5432/ibw?sslmode=verify-full');
    expect(redact('echo p@ss/w0rd and p%40ss%2Fw0rd and env-pw-123')).toBe('echo *** and *** and ***');
    expect(redact('other postgresql://x:whatever@h/d')).toBe('other postgresql://x:***@h/d');
    expect(redactor(secretsOf("host=db password='a b' user=x"))("password='a b' here")).toBe("password='***' here");
  });

  it('databaseError keeps the SQLSTATE, redacts the message and attaches no raw cause', () => {
    const raw = Object.assign(new Error('boom for postgres://u:hunter2@h/d'), { code: '57P01', client: { password: 'hunter2' } });
    const err = databaseError('append', raw, redactor(['hunter2']));
    expect(err).toMatchObject({ kind: 'store', scope: 'attempt', code: '57P01' });
    expect(err.message).toBe('PostgreSQL: cannot append: boom for postgres://u:***@h/d (57P01)');
    expect(err.cause).toBeUndefined();
    expect(JSON.stringify(err)).not.toContain('hunter2');
  });

  it('quotes only plain schema names', () => {
    expect(quoteSchema('iot_batch_watcher')).toBe('"iot_batch_watcher"');
    for (const bad of ['Upper', '1abc', 'a-b', 'a"b', '', 'x'.repeat(64)]) {
      expect(() => quoteSchema(bad)).toThrow(expect.objectContaining({ code: 'InvalidSchema' }));
    }
  });
});

describe('state backend selection', () => {
  const postgres = compileConfigObject({ alibaba: { regionId: 'cn-shanghai' }, state: { backend: 'postgres', postgres: { urlEnv: 'MY_DB' } } });

  it('compiles the state keys with their defaults', () => {
    const file = compileConfigObject({ alibaba: { regionId: 'cn-shanghai' } });
    expect(file.state.backend).toBe('file');
    expect(file.state.postgres).toEqual({ urlEnv: 'IBW_DATABASE_URL', schema: 'iot_batch_watcher', leaseMs: 15_000 });
    expect(postgres.state.postgres?.urlEnv).toBe('MY_DB');
  });

  it('takes the URL from urlEnv, lets PGHOST stand in, and says what to set when nothing is', async () => {
    expect(databaseUrlFromConfig(postgres, { MY_DB: 'postgres://a@b/c' })).toBe('postgres://a@b/c');
    expect(databaseUrlFromConfig(postgres, { PGHOST: 'db' })).toBeUndefined();
    expect(() => databaseUrlFromConfig(postgres, { IBW_DATABASE_URL: 'postgres://a@b/c' })).toThrow(
      expect.objectContaining({ kind: 'config', code: 'DatabaseUrlMissing', message: expect.stringContaining('MY_DB') }),
    );
    await expect(openStateBackend(postgres, { env: {} })).rejects.toMatchObject({ code: 'DatabaseUrlMissing' });
  });
});
