/**
 * Two daemons on one PostgreSQL schema (DESIGN.md §12): the first owns the account and settles its batches, the
 * second is a connected standby (ready, no API calls); when the owner stops (SIGTERM releases its lease), the standby
 * takes the account over and resumes the batches from the database; a replica whose lease cannot be confirmed makes
 * no API calls; a standby whose takeover cannot load the state fails its start and leaves the lease free.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import type { CompiledConfig } from '../../../src/config/types.js';
import { Daemon } from '../../../src/daemon.js';
import { createLogger } from '../../../src/ops/logger.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';

const credentials = {
  get: async () => ({ accessKeyId: 'SimAccessKeyId', accessKeySecret: 'SimAccessKeySecret', securityToken: null }),
};

function quietLogger(lines: string[]) {
  return createLogger({
    level: 'info',
    format: 'json',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    }),
  });
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('postgres backend: one owner, a ready standby, takeover on stop', () => {
  let sim: SimulatorHandle;
  let dir: string;
  const schema = uniqueSchema('ibw_standby');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-standby-'));
    // A check that never settles keeps the batch pending while ownership moves; one that settles quickly proves work.
    sim = await startSimulator({ port: 0, timeScale: 50, seed: 7 });
    sim.control.addBatch({ applyId: '7100001', productKey: 'a1SimProduct1', mode: 'random', count: 2, outcome: 'never' });
    sim.control.addBatch({ applyId: '7100002', productKey: 'a1SimProduct1', mode: 'random', count: 3 });
  });

  afterAll(async () => {
    await sim?.close();
    await rm(dir, { recursive: true, force: true });
    await dropSchema(schema);
  });

  function config(name: string): CompiledConfig {
    return compileConfigObject(
      {
        alibaba: { regionId: 'cn-shanghai', endpoint: sim.url },
        polling: { initialDelay: '100ms', maxDelay: '300ms' },
        state: { backend: 'postgres', postgres: { schema, lease: '1500ms' } },
        output: { resultsDir: `results-${name}` },
        http: { listen: 'off' },
        batches: [
          { applyId: '7100001', productKey: 'a1SimProduct1' },
          { applyId: '7100002', productKey: 'a1SimProduct1' },
        ],
      },
      { cwd: dir },
    );
  }

  it('the second daemon stands by (ready, no watcher, so no calls), then takes over when the owner stops', async () => {
    const env = { IBW_DATABASE_URL: testDatabaseUrl() };
    const linesA: string[] = [];
    const linesB: string[] = [];
    const a = new Daemon({ config: config('a'), logger: quietLogger(linesA), env, credentials, housekeeping: false });
    await a.start();
    await until(() => a.watcher.record('a1SimProduct1/7100002')?.state === 'settled', 20_000);

    const b = new Daemon({ config: config('b'), logger: quietLogger(linesB), env, credentials, housekeeping: false });
    const bStarted = b.start();
    await until(() => b.isReady(), 10_000);
    expect(b.state).toBe('starting');
    expect(linesB.some((l) => l.includes('standing by: another replica owns the account'))).toBe(true);

    // Only the owner polls: the simulator sees no request signed after the standby came up that B made (B has no
    // watcher yet, so every request is A's); then A stops and releases its lease.
    const pollsBefore = a.watcher.record('a1SimProduct1/7100001')?.polls ?? 0;
    expect(pollsBefore).toBeGreaterThan(0);
    const stopped = await a.stop();
    expect(stopped.flushError).toBeNull();

    await bStarted;
    expect(b.state).toBe('running');
    expect(linesB.some((l) => l.includes('took over the account'))).toBe(true);
    // B resumed the pending batch where A left it (its poll count carried over) and kept the settled one settled.
    const resumed = b.watcher.record('a1SimProduct1/7100001');
    expect(resumed?.state).toBe('pending');
    expect(resumed?.polls ?? 0).toBeGreaterThanOrEqual(pollsBefore);
    expect(b.watcher.record('a1SimProduct1/7100002')?.state).toBe('settled');
    await until(() => (b.watcher.record('a1SimProduct1/7100001')?.polls ?? 0) > (resumed?.polls ?? 0), 10_000);
    const lease = await sql<{ epoch: string }>(`SELECT epoch FROM "${schema}".leases`);
    expect(Number(lease[0]!.epoch)).toBe(2);
    await b.stop();
  });

  it('a standby whose takeover cannot load the state fails its start, names the row, and leaves the lease free', async () => {
    const env = { IBW_DATABASE_URL: testDatabaseUrl() };
    const linesB: string[] = [];
    const a = new Daemon({ config: config('e'), logger: quietLogger([]), env, credentials, housekeeping: false });
    await a.start();
    const b = new Daemon({ config: config('f'), logger: quietLogger(linesB), env, credentials, housekeeping: false });
    const bStarted = b.start();
    const outcome = bStarted.then(
      () => null,
      (err: unknown) => err,
    );
    await until(() => b.isReady(), 10_000);
    // A journal row no record can be read from, far past the owner's own sequence numbers: the owner never reads
    // it back, the standby's load at takeover does.
    await sql(`INSERT INTO "${schema}".journal (account, seq, rec) VALUES ('default', 999999999, '{"bogus":true}')`);
    try {
      await a.stop();
      const err = (await outcome) as { code?: string; message?: string } | null;
      expect(err?.code).toBe('LedgerCorrupt');
      expect(err?.message).toContain('seq=999999999');
      expect(b.state).toBe('stopped');
      expect(b.isReady()).toBe(false);
      expect(linesB.some((l) => l.includes('took over the account'))).toBe(false);
      // Whatever B got of the lease it gave up: nobody owns the account, and a third replica takes it at once.
      const lease = await sql<{ owner: string | null; free: boolean }>(`SELECT owner, expires_at <= clock_timestamp() AS free FROM "${schema}".leases`);
      expect(lease[0]!.owner).toBeNull();
      expect(lease[0]!.free).toBe(true);
    } finally {
      await sql(`DELETE FROM "${schema}".journal WHERE seq = 999999999`);
    }
    const c = new Daemon({ config: config('g'), logger: quietLogger([]), env, credentials, housekeeping: false });
    await c.start();
    expect(c.state).toBe('running');
    await c.stop();
  });

  it('a standby stopped while it waits exits cleanly without ever owning the account', async () => {
    const env = { IBW_DATABASE_URL: testDatabaseUrl() };
    const a = new Daemon({ config: config('c'), logger: quietLogger([]), env, credentials, housekeeping: false });
    await a.start();
    const b = new Daemon({ config: config('d'), logger: quietLogger([]), env, credentials, housekeeping: false });
    const started = b.start();
    await until(() => b.isReady(), 10_000);
    const result = await b.stop();
    expect(result.reason).toBe('stopped');
    await expect(started).rejects.toBeTruthy();
    expect(b.state).toBe('stopped');
    expect(a.state).toBe('running');
    await a.stop();
  });
});
