/**
 * The database going away under a running daemon (DESIGN.md §12), end to end: the daemon reaches PostgreSQL
 * through a proxy the test cuts, a second daemon (when there is one) directly. While the owner cannot confirm its
 * lease it makes no API call (the simulator's request log stops growing), `/readyz` answers 503, nothing crashes,
 * and the log has one error line when it goes and one line when it comes back (not one per retry). When nobody
 * took the account meanwhile it carries on without a restart; when the other replica took it, the old owner's
 * lease is lost: it stops working on the account without another API call and stands by, and takes it back when
 * the other replica leaves, all without a restart.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import type { CompiledConfig } from '../../../src/config/types.js';
import { Daemon } from '../../../src/daemon.js';
import { createLogger } from '../../../src/ops/logger.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';
import { dropSchema, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';
import { type PostgresProxy, startPostgresProxy } from '../../helpers/postgres-proxy.js';

const credentials = {
  get: async () => ({ accessKeyId: 'SimAccessKeyId', accessKeySecret: 'SimAccessKeySecret', securityToken: null }),
};
const LEASE_MS = 1500;
/** Two thirds of the lease: the owner's local trust after its last renewal was sent. */
const TRUST_MS = 1000;

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

function capture(lines: LogLine[]) {
  return createLogger({
    level: 'info',
    format: 'json',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as LogLine);
        done();
      },
    }),
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(25);
  }
}

async function readyz(daemon: Daemon): Promise<number> {
  const res = await fetch(`${daemon.httpUrl!}/readyz`);
  await res.text();
  return res.status;
}

describe('postgres backend: the database goes away under a running owner', () => {
  let sim: SimulatorHandle;
  /** The second replica's endpoint: each simulator's request log then shows one replica's calls. */
  let simB: SimulatorHandle;
  let proxy: PostgresProxy;
  let dir: string;
  const schemas: string[] = [];
  const daemons: Daemon[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-outage-'));
    proxy = await startPostgresProxy(testDatabaseUrl());
    sim = await startSimulator({ port: 0, timeScale: 50, seed: 11 });
    // Never settles: the owner keeps polling it, so a pause in the request log is the gate at work.
    sim.control.addBatch({ applyId: '7200001', productKey: 'a1SimProduct1', mode: 'random', count: 2, outcome: 'never' });
    simB = await startSimulator({ port: 0, timeScale: 50, seed: 12 });
    simB.control.addBatch({ applyId: '7200001', productKey: 'a1SimProduct1', mode: 'random', count: 2, outcome: 'never' });
  });
  afterEach(async () => {
    proxy.restore();
    for (const d of daemons.splice(0)) await d.stop().catch(() => undefined);
  });
  afterAll(async () => {
    await sim?.close();
    await simB?.close();
    await proxy?.close();
    await rm(dir, { recursive: true, force: true });
    for (const s of schemas) await dropSchema(s);
  });

  function config(schema: string, name: string): CompiledConfig {
    return compileConfigObject(
      {
        alibaba: { regionId: 'cn-shanghai', endpoint: name === 'b' ? simB.url : sim.url },
        polling: { initialDelay: '100ms', maxDelay: '200ms' },
        state: { backend: 'postgres', postgres: { schema, lease: `${LEASE_MS}ms` } },
        output: { resultsDir: `results-${name}` },
        http: { listen: '127.0.0.1:0' },
        batches: [{ applyId: '7200001', productKey: 'a1SimProduct1' }],
      },
      { cwd: dir },
    );
  }

  function daemon(schema: string, name: string, url: string, lines: LogLine[]): Daemon {
    const d = new Daemon({ config: config(schema, name), logger: capture(lines), env: { IBW_DATABASE_URL: url }, credentials, housekeeping: false });
    daemons.push(d);
    return d;
  }

  /** Status calls that reached replica a's simulator. */
  const requests = (): number => sim.control.requestLog().filter((e) => e.applyId === '7200001').length;

  it('nobody takes over: no calls and 503 while cut, one line each way, then polling and 200 again without a restart', async () => {
    const schema = uniqueSchema('ibw_outage');
    schemas.push(schema);
    const lines: LogLine[] = [];
    const a = daemon(schema, 'a', proxy.url, lines);
    await a.start();
    await until(() => (a.watcher.record('a1SimProduct1/7200001')?.polls ?? 0) >= 3, 10_000, 'first polls');
    expect(await readyz(a)).toBe(200);

    proxy.cut();
    const cutAt = Date.now();
    await until(async () => (await readyz(a)) === 503, TRUST_MS + 2000, '/readyz 503');
    // Past the trust window (plus a poll in flight) nothing more goes out.
    await sleep(Math.max(0, cutAt + TRUST_MS + 400 - Date.now()));
    const frozen = requests();
    await sleep(2500); // several renewal periods and more than the lease
    expect(requests()).toBe(frozen);
    expect(a.state).toBe('running');

    proxy.restore();
    await until(() => requests() > frozen + 2, 10_000, 'polling again');
    await until(async () => (await readyz(a)) === 200, 5000, '/readyz 200');
    const metrics = await (await fetch(`${a.httpUrl!}/metrics`)).text();
    expect(metrics).toContain('ibw_account_owned{account="default"} 1');
    expect(metrics).toContain('ibw_lease_changes_total{reason="renew_failed"} 1');
    expect(metrics).toContain('ibw_lease_changes_total{reason="renew_recovered"} 1');

    const msgs = lines.map((l) => l.msg);
    expect(msgs.filter((m) => m === 'cannot renew the account lease')).toHaveLength(1);
    expect(msgs.filter((m) => m === 'PostgreSQL reachable again: lease renewed')).toHaveLength(1);
    // Every error line of the outage, whatever its source: one per component and state change, not one per retry.
    const errors = lines.filter((l) => l.level >= 50).map((l) => l.msg);
    const perMessage = new Map<string, number>();
    for (const m of errors) perMessage.set(m, (perMessage.get(m) ?? 0) + 1);
    for (const [m, n] of perMessage) expect(n, `${m} logged ${n} times`).toBe(1);
    expect(JSON.stringify(lines)).not.toContain(new URL(testDatabaseUrl()).password);
  });

  it('another replica takes over meanwhile: the old owner makes no call, finds its lease lost, stands by, and takes the account back later', async () => {
    const schema = uniqueSchema('ibw_outage');
    schemas.push(schema);
    const linesA: LogLine[] = [];
    const linesB: LogLine[] = [];
    const a = daemon(schema, 'a', proxy.url, linesA);
    await a.start();
    await until(() => (a.watcher.record('a1SimProduct1/7200001')?.polls ?? 0) >= 2, 10_000, 'first polls');
    const b = daemon(schema, 'b', testDatabaseUrl(), linesB);
    const bStarted = b.start();
    await until(() => b.isReady(), 10_000, 'standby ready');

    proxy.cut();
    const cutAt = Date.now();
    await bStarted; // the lease lapsed on the server's clock: b took the account over
    expect(b.state).toBe('running');
    expect(Date.now() - cutAt).toBeLessThan(LEASE_MS + 5000);
    await until(() => simB.control.requestLog().some((e) => e.applyId === '7200001'), 10_000, 'b polls');
    // a's calls stopped within its trust window (plus a poll in flight), before b could take over.
    await sleep(Math.max(0, cutAt + TRUST_MS + 400 - Date.now()));
    const frozen = requests();

    proxy.restore();
    // a learns it lost the account (its renewal finds b's epoch) and stands by again, without a restart.
    await until(() => a.runtime('default')?.state === 'standby', 10_000, 'a standing by');
    expect(a.state).toBe('running');
    await until(async () => (await readyz(a)) === 200, 5000, 'a ready as a standby');
    await sleep(500);
    expect(requests()).toBe(frozen);
    const msgsA = linesA.map((l) => l.msg);
    expect(msgsA.filter((m) => m === 'cannot renew the account lease')).toHaveLength(1);
    // NOTE: two paths find the loss, whichever runs first once the database is back: the lease's renewal, or a store
    // write that the fence refuses (the deferred polls' retry). Either says so once; the standby line follows once.
    const lossLines = msgsA.filter((m) => m === 'lost the account lease to another replica' || /^the fence refused an? .*: the account lease was lost$/.test(m));
    expect(lossLines).toHaveLength(1);
    expect(msgsA.filter((m) => m === 'another replica owns the account now: stopping work on it and standing by')).toHaveLength(1);
    expect(await (await fetch(`${b.httpUrl!}/metrics`)).text()).toContain('ibw_account_owned{account="default"} 1');
    const metricsA = await (await fetch(`${a.httpUrl!}/metrics`)).text();
    expect(metricsA).toContain('ibw_account_owned{account="default"} 0');
    expect(metricsA).toContain('ibw_lease_changes_total{reason="lost"} 1');

    // b leaves (SIGTERM releases at once): a, still the same process, takes the account back and polls again.
    await b.stop();
    await until(() => a.runtime('default')?.state === 'running', LEASE_MS + 5000, 'a owns the account again');
    await until(() => requests() > frozen, 10_000, 'a polls again');
    expect(await (await fetch(`${a.httpUrl!}/metrics`)).text()).toContain('ibw_lease_changes_total{reason="acquired"} 2');
  });

  it('a standby whose database goes away keeps standing by (503, no crash, one line each way) and still takes over', async () => {
    const schema = uniqueSchema('ibw_outage');
    schemas.push(schema);
    const linesB: LogLine[] = [];
    const a = daemon(schema, 'a', testDatabaseUrl(), []);
    await a.start();
    const b = daemon(schema, 'b', proxy.url, linesB);
    const bStarted = b.start();
    let bFailed: unknown = null;
    bStarted.catch((err: unknown) => {
      bFailed = err;
    });
    await until(async () => b.httpUrl !== null && (await readyz(b)) === 200, 10_000, 'standby ready');
    proxy.cut();
    await until(async () => (await readyz(b)) === 503, 5000, 'standby 503');
    await sleep(2000); // several retries of the standby loop
    expect(bFailed).toBeNull();
    expect(b.state).toBe('starting');
    proxy.restore();
    await until(async () => (await readyz(b)) === 200, 5000, 'standby ready again');
    await a.stop();
    await bStarted;
    expect(b.state).toBe('running');
    const msgs = linesB.map((l) => l.msg);
    expect(msgs.filter((m) => m === 'standing by, but PostgreSQL cannot be reached; retrying')).toHaveLength(1);
    expect(msgs.filter((m) => m === 'PostgreSQL reachable again')).toHaveLength(1);
    await until(() => simB.control.requestLog().some((e) => e.applyId === '7200001'), 10_000, 'b polls');
  });
});
