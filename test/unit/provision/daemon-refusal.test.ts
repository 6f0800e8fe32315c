/**
 * The daemon refuses `provision` entries it cannot run safely, at start, with a config error naming the entry
 * (file:line:col and the key): without device secrets (the factory CSV needs them). Nothing is opened before: no
 * database, no API. (On PostgreSQL they run: test/integration/postgres/provision.test.ts.)
 */

import { describe, expect, it } from 'vitest';

import { parseConfigText } from '../../../src/config/load.js';
import { Daemon } from '../../../src/daemon.js';
import { ConfigError } from '../../../src/errors.js';
import { createLogger } from '../../../src/ops/logger.js';

const base = [
  'alibaba: { regionId: cn-shanghai, endpoint: "http://127.0.0.1:9" }',
  'http: { listen: "off" }',
];
const job = ['provision:', '  - { name: line-4, productKey: a1P, count: 3 }'];

async function startError(lines: string[]): Promise<unknown> {
  const config = parseConfigText(`${lines.join('\n')}\n`, 'w.yaml', { cwd: '/tmp', env: {} });
  const daemon = new Daemon({ config, logger: createLogger({ level: 'silent' }), env: { IBW_DATABASE_URL: 'postgres://u:p@127.0.0.1:9/db' }, http: false, housekeeping: false });
  return daemon.start().then(
    () => daemon.stop().then(() => null),
    (err: unknown) => err,
  );
}

describe('provision entries the daemon refuses', () => {
  it('without device secrets in the results', async () => {
    const err = await startError([...base, 'devices: { includeSecrets: false }', ...job]);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(/w\.yaml:5:5: provision: provision entries need devices\.fetch: true and devices\.includeSecrets: true/);
  });
});
