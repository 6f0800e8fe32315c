/**
 * `state.postgres.ssl` (DESIGN.md §12, issue #16): how the config keys compile, how they map to pg's `ssl`
 * option (libpq's meaning of the modes), and that they win over the URL's own TLS parameters. No database
 * needed; the handshake itself is checked in test/integration/postgres/tls.test.ts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import { ConfigError } from '../../../src/errors.js';
import { postgresConnectSettings } from '../../../src/ledger/open-state.js';
import { pgSslOptions, withoutUrlSsl } from '../../../src/ledger/postgres-connection.js';

/** pg's parsed connection parameters (not in @types/pg). */
function sslPgUses(settings: pg.ClientConfig): unknown {
  return (new pg.Client(settings) as unknown as { connectionParameters: { ssl: unknown } }).connectionParameters.ssl;
}

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function withSsl(ssl: unknown, cwd?: string) {
  return compileConfigObject(
    { alibaba: { regionId: 'cn-shanghai' }, state: { backend: 'postgres', postgres: { urlEnv: 'DB', ssl } } },
    cwd === undefined ? {} : { cwd },
  );
}

describe('state.postgres.ssl', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-ssl-'));
    await writeFile(join(dir, 'ca.pem'), PEM);
    await writeFile(join(dir, 'not-pem.txt'), 'hello');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('compiles mode and caFile (resolved against the working directory); absent stays absent', () => {
    expect(withSsl({ mode: 'verify-full', caFile: 'ca.pem' }, dir).state.postgres?.ssl).toEqual({
      mode: 'verify-full',
      caFile: resolve(dir, 'ca.pem'),
    });
    expect(withSsl({ mode: 'require' }).state.postgres?.ssl).toEqual({ mode: 'require' });
    const none = compileConfigObject({ alibaba: { regionId: 'cn-shanghai' } });
    expect(none.state.postgres).not.toHaveProperty('ssl');
  });

  it('refuses an unknown mode, a missing mode and unknown keys, naming the key', () => {
    for (const [ssl, key] of [
      [{ mode: 'verify-ca' }, 'state.postgres.ssl.mode'],
      [{ mode: 'prefer' }, 'state.postgres.ssl.mode'],
      [{}, 'state.postgres.ssl.mode'],
      [{ mode: 'require', rootcert: 'x' }, 'state.postgres.ssl'],
    ] as const) {
      let caught: unknown;
      try {
        withSsl(ssl);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect(String((caught as Error).message)).toContain(key);
    }
  });

  it('maps the modes to pg options with libpq meanings', async () => {
    const ca = join(dir, 'ca.pem');
    expect(await pgSslOptions({ mode: 'disable', caFile: ca })).toBe(false);
    expect(await pgSslOptions({ mode: 'require' })).toEqual({ rejectUnauthorized: false });
    const requireCa = (await pgSslOptions({ mode: 'require', caFile: ca })) as Record<string, unknown>;
    expect(requireCa).toMatchObject({ ca: PEM, rejectUnauthorized: true });
    // verify-ca: the chain is checked, the host name is not.
    expect(typeof requireCa.checkServerIdentity).toBe('function');
    expect((requireCa.checkServerIdentity as () => unknown)()).toBeUndefined();
    expect(await pgSslOptions({ mode: 'verify-full' })).toEqual({ rejectUnauthorized: true });
    expect(await pgSslOptions({ mode: 'verify-full', caFile: ca })).toEqual({ ca: PEM, rejectUnauthorized: true });
  });

  it('an unreadable or non-PEM caFile is a config error naming the key and the file', async () => {
    await expect(pgSslOptions({ mode: 'verify-full', caFile: join(dir, 'missing.pem') })).rejects.toMatchObject({
      kind: 'config',
      message: expect.stringMatching(/state\.postgres\.ssl\.caFile: cannot read .*missing\.pem.*ENOENT/),
    });
    await expect(pgSslOptions({ mode: 'require', caFile: join(dir, 'not-pem.txt') })).rejects.toMatchObject({
      kind: 'config',
      message: expect.stringContaining('not-pem.txt holds no PEM certificate'),
    });
  });

  it("drops the URL's TLS parameters only, keeping the rest of the URL", () => {
    expect(withoutUrlSsl('postgres://u:p@db:5432/x?sslmode=disable&application_name=a&sslrootcert=/r.pem')).toEqual({
      url: 'postgres://u:p@db:5432/x?application_name=a',
      removed: ['sslmode', 'sslrootcert'],
    });
    expect(withoutUrlSsl('postgres://u:p@db/x')).toEqual({ url: 'postgres://u:p@db/x', removed: [] });
    expect(withoutUrlSsl('host=db sslmode=disable')).toEqual({ url: 'host=db sslmode=disable', removed: [] });
  });

  it('config wins over the URL and PGSSLMODE; without it the URL decides (as pg reads it)', async () => {
    const env = { DB: 'postgres://u:p@db/x?sslmode=disable' };
    const set = await postgresConnectSettings(withSsl({ mode: 'verify-full', caFile: join(dir, 'ca.pem') }), env);
    expect(set.connectionString).toBe('postgres://u:p@db/x');
    // What pg makes of it: the explicit option, not the URL's sslmode=disable.
    expect(sslPgUses(set)).toEqual({ ca: PEM, rejectUnauthorized: true });

    const plain = compileConfigObject({ alibaba: { regionId: 'cn-shanghai' }, state: { backend: 'postgres', postgres: { urlEnv: 'DB' } } });
    const fromUrl = await postgresConnectSettings(plain, env);
    expect(fromUrl).toEqual({ connectionString: env.DB });
    expect(sslPgUses(fromUrl)).toBe(false);
  });
});
