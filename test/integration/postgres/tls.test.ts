/**
 * TLS to PostgreSQL through `state.postgres.ssl` (DESIGN.md §12, issue #16), with a real handshake: the run's
 * test server is switched to `ssl = on` with a certificate made here by `openssl` (a throwaway CA, and a
 * server certificate for the name `db.test` and the address 127.0.0.1 signed by it), then reset.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import type { PostgresSslConfig } from '../../../src/config/types.js';
import { postgresConnectSettings } from '../../../src/ledger/open-state.js';
import { connectPostgres } from '../../../src/ledger/postgres-connection.js';
import { openPostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';

const run = promisify(execFile);

async function openssl(args: string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd });
}

/** A CA and a server certificate signed by it, for `san`; and a second CA that signed nothing. */
async function makeCertificates(dir: string, san: string): Promise<void> {
  const days = ['-days', '2'];
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=ibw test CA', ...days], dir);
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other-ca.pem', '-subj', '/CN=other CA', ...days], dir);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=db.test'], dir);
  await writeFile(join(dir, 'ext.cnf'), `subjectAltName=${san}\n`);
  await openssl(
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-extfile', 'ext.cnf', ...days],
    dir,
  );
}

describe('state.postgres.ssl against a TLS server', () => {
  let certDir: string;
  let serverFiles: string[] = [];
  let schema: string;

  beforeAll(async () => {
    certDir = await mkdtemp(join(tmpdir(), 'ibw-tls-'));
    await makeCertificates(certDir, 'DNS:db.test,IP:127.0.0.1');
    // Hand the key pair to the server: into its data directory, owned by the user it runs as, key 0600.
    const dataDir = (await sql<{ data_directory: string }>('SHOW data_directory'))[0]!.data_directory;
    const asRoot = process.getuid?.() === 0;
    const idOf = async (flag: '-u' | '-g'): Promise<number> => Number((await run('id', [flag, 'postgres'])).stdout.trim());
    for (const [from, to] of [
      ['server.crt', 'ibw-test-server.crt'],
      ['server.key', 'ibw-test-server.key'],
    ] as const) {
      const target = join(dataDir, to);
      await writeFile(target, await readFile(join(certDir, from)), { mode: 0o600 });
      await chmod(target, 0o600);
      if (asRoot) await chown(target, await idOf('-u'), await idOf('-g'));
      serverFiles.push(target);
    }
    await sql(`ALTER SYSTEM SET ssl_cert_file = 'ibw-test-server.crt'`);
    await sql(`ALTER SYSTEM SET ssl_key_file = 'ibw-test-server.key'`);
    await sql('ALTER SYSTEM SET ssl = on');
    await sql('SELECT pg_reload_conf()');
    // The reload is asynchronous (a signal to the server): retry until a TLS connection is accepted. Each try is
    // a loopback round trip, so no sleep is needed.
    for (let i = 0; ; i++) {
      try {
        const { client } = await connectPostgres(testDatabaseUrl(), {}, { rejectUnauthorized: false });
        await client.end();
        break;
      } catch (err) {
        if (i >= 500) throw err;
      }
    }
    schema = uniqueSchema('ibw_tls');
  });

  afterAll(async () => {
    await sql('ALTER SYSTEM RESET ssl').catch(() => undefined);
    await sql('ALTER SYSTEM RESET ssl_cert_file').catch(() => undefined);
    await sql('ALTER SYSTEM RESET ssl_key_file').catch(() => undefined);
    await sql('SELECT pg_reload_conf()').catch(() => undefined);
    await dropSchema(schema).catch(() => undefined);
    for (const file of serverFiles) await rm(file, { force: true });
    serverFiles = [];
    await rm(certDir, { recursive: true, force: true });
  });

  function config(ssl: { mode: PostgresSslConfig['mode']; caFile?: string }) {
    return compileConfigObject({
      alibaba: { regionId: 'cn-shanghai' },
      state: { backend: 'postgres', postgres: { urlEnv: 'DB', schema, ssl } },
    });
  }

  /** Connects as the `results` command does and asks the server whether this connection uses TLS. */
  async function usesTls(ssl: { mode: PostgresSslConfig['mode']; caFile?: string }, url = testDatabaseUrl()): Promise<boolean> {
    const settings = await postgresConnectSettings(config(ssl), { DB: url });
    const { client } = await connectPostgres(settings.connectionString, {}, settings.ssl);
    try {
      const { rows } = await client.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      return rows[0]!.ssl;
    } finally {
      await client.end();
    }
  }

  it('verify-full with the CA: TLS, and the ledger opens, migrates and appends over it', async () => {
    const caFile = join(certDir, 'ca.pem');
    expect(await usesTls({ mode: 'verify-full', caFile })).toBe(true);
    const settings = await postgresConnectSettings(config({ mode: 'verify-full', caFile }), { DB: testDatabaseUrl() });
    const ledger = await openPostgresLedger({ ...settings, schema, leaseMs: 5000, renewEveryMs: 0 });
    try {
      await ledger.append([{ t: 'forget', key: 'pk/1' }]);
      expect(ledger.stats().appendedRecords).toBe(1);
    } finally {
      await ledger.close();
    }
  });

  it("the config's mode wins over the URL's sslmode=disable", async () => {
    expect(await usesTls({ mode: 'verify-full', caFile: join(certDir, 'ca.pem') }, `${testDatabaseUrl()}?sslmode=disable`)).toBe(true);
    expect(await usesTls({ mode: 'disable' }, `${testDatabaseUrl()}?sslmode=require`)).toBe(false);
  });

  it('require: TLS without checking the certificate; with a caFile, the chain is checked', async () => {
    expect(await usesTls({ mode: 'require' })).toBe(true);
    expect(await usesTls({ mode: 'require', caFile: join(certDir, 'ca.pem') })).toBe(true);
    await expect(usesTls({ mode: 'require', caFile: join(certDir, 'other-ca.pem') })).rejects.toMatchObject({ kind: 'store' });
  });

  it('verify-full refuses a server whose certificate another CA signed, or the system CAs do not know', async () => {
    await expect(usesTls({ mode: 'verify-full', caFile: join(certDir, 'other-ca.pem') })).rejects.toMatchObject({
      kind: 'store',
      message: expect.stringMatching(/certificate/i),
    });
    await expect(usesTls({ mode: 'verify-full' })).rejects.toMatchObject({ kind: 'store', message: expect.stringMatching(/certificate/i) });
  });
});
