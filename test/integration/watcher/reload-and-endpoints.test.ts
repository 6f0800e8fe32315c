import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadConfigFile } from '../../../src/config/load.js';
import { Daemon } from '../../../src/daemon.js';
import { createManualCronScheduler } from '../../../src/ops/housekeeping.js';
import { createLogger } from '../../../src/ops/logger.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';

const credentials = {
  get: () => Promise.resolve({ accessKeyId: 'SimAccessKeyId', accessKeySecret: 'SimAccessKeySecret', securityToken: null }),
};

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('hot reload, housekeeping and the ops endpoints of a running daemon', () => {
  let sim: SimulatorHandle;
  let dir: string;
  let file: string;
  let daemon: Daemon;
  const cron = createManualCronScheduler();
  const lines: Record<string, unknown>[] = [];

  const yaml = (batches: string[]): string =>
    [
      `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
      'polling: { initialDelay: 100ms, maxDelay: 500ms }',
      `state: { dir: ${join(dir, 'state')} }`,
      `output: { resultsDir: ${join(dir, 'results')} }`,
      'http: { listen: "127.0.0.1:0" }',
      'housekeeping: { reloadConfig: "*/5 * * * *", summary: "*/15 * * * *", prune: "0 3 * * *", retention: 1s }',
      'batches:',
      ...batches,
      '',
    ].join('\n');

  beforeAll(async () => {
    sim = await startSimulator({ port: 0, timeScale: 20 });
    dir = await mkdtemp(join(tmpdir(), 'ibw-reload-'));
    file = join(dir, 'watcher.yaml');
    sim.control.addBatch({ applyId: '4100001', productKey: 'a1SimProduct1', mode: 'random', count: 2, outcome: 'never' });
    sim.control.addBatch({ applyId: '4100002', productKey: 'a1SimProduct1', mode: 'random', count: 2, outcome: 'never' });
    sim.control.addBatch({ applyId: '4100003', productKey: 'a1SimProduct1', mode: 'random', count: 3 });
    await writeFile(file, yaml(['  - { applyId: "4100001", productKey: a1SimProduct1 }', '  - { applyId: "4100002", productKey: a1SimProduct1 }', '  - { applyId: "4199999", productKey: a1SimProduct1 }']));
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    daemon = new Daemon({
      config: await loadConfigFile(file),
      logger: createLogger({ level: 'debug', destination: sink }),
      env: {},
      credentials,
      loadConfig: () => loadConfigFile(file),
      cronScheduler: cron,
      watchDebounceMs: 100,
    });
    await daemon.start();
  });

  afterAll(async () => {
    await daemon?.stop();
    await sim?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = async (path: string): Promise<{ status: number; text: string; type: string | null }> => {
    const res = await fetch(`${daemon.httpUrl!}${path}`);
    return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
  };

  it('serves /healthz, /readyz, /metrics and /v1/batches', async () => {
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
    await until(async () => JSON.parse((await get('/v1/batches')).text).some((r: { outcome: string | null }) => r.outcome === 'rejected'));
    const batches = JSON.parse((await get('/v1/batches')).text) as { applyId: string; outcome: string | null; status: string | null }[];
    expect(batches.map((b) => b.applyId).sort()).toEqual(['4100001', '4100002', '4199999']);
    expect(batches.find((b) => b.applyId === '4199999')?.outcome).toBe('rejected');
    const metrics = await get('/metrics');
    expect(metrics.type).toContain('text/plain');
    expect(metrics.text).toMatch(/ibw_api_requests_total\{action="QueryBatchRegisterDeviceStatus",outcome="success"\} [1-9]/);
    expect(metrics.text).toMatch(/ibw_batches\{state="pending"\} 2/);
    expect(metrics.text).toMatch(/ibw_batches\{state="parked"\} 1/);
    expect(metrics.text).toMatch(/ibw_rate_limit_qps\{action="QueryBatchRegisterDeviceStatus"\} 5/);
    expect(metrics.text).toContain('ibw_process_cpu_seconds_total');
  });

  it('reload on the cron schedule: adds, cancels and re-arms; an invalid file keeps the running config', async () => {
    // Remove 4100002 (cancelled), add 4100003 (created), change the rejected entry (re-armed; still unknown → rejected again).
    await writeFile(file, yaml(['  - { applyId: "4100001", productKey: a1SimProduct1 }', '  - { applyId: "4100003", productKey: a1SimProduct1 }', '  - { applyId: "4199999", productKey: a1SimProduct1, name: fixed }']));
    cron.fire('reloadConfig');
    await until(() => daemon.watcher.record('a1SimProduct1/4100003')?.outcome === 'created');
    expect(daemon.watcher.record('a1SimProduct1/4100002')?.outcome).toBe('cancelled');
    await until(() => daemon.watcher.record('a1SimProduct1/4199999')?.name === 'fixed' && daemon.watcher.record('a1SimProduct1/4199999')?.state === 'parked');
    expect(lines.filter((l) => (l.event as { type?: string; applyId?: string } | undefined)?.type === 'batch.added' && (l.event as { applyId: string }).applyId === '4199999')).toHaveLength(2);

    await writeFile(file, yaml(['  - { applyId: "4100001", productKey: a1SimProduct1, polling: { maxDelay: soon } }']));
    cron.fire('reloadConfig');
    await until(() => lines.some((l) => l.msg === 'new configuration is invalid; keeping the running one'));
    expect(lines.some((l) => typeof l.msg === 'string' && /watcher\.yaml:\d+:\d+: batches\[0\]\.polling\.maxDelay/.test(l.msg))).toBe(true);
    expect(daemon.watcher.record('a1SimProduct1/4100001')?.state).toBe('pending');
    const metrics = (await get('/metrics')).text;
    expect(metrics).toMatch(/ibw_config_reloads_total\{outcome="ok"\} [1-9]/);
    expect(metrics).toMatch(/ibw_config_reloads_total\{outcome="invalid"\} 1/);
  });

  it('reloads on a file change and on SIGHUP-style calls, and logs a summary on its schedule', async () => {
    sim.control.addBatch({ applyId: '4100004', productKey: 'a1SimProduct2', mode: 'random', count: 1 });
    await writeFile(file, yaml(['  - { applyId: "4100001", productKey: a1SimProduct1 }', '  - { applyId: "4100004", productKey: a1SimProduct2 }']));
    // No cron tick: the file watch sees the change.
    await until(() => daemon.watcher.record('a1SimProduct2/4100004')?.state === 'settled');
    expect(await daemon.reload('SIGHUP')).toBe('ok');
    cron.fire('summary');
    await until(() => lines.some((l) => l.msg === 'summary'));
    const summary = lines.find((l) => l.msg === 'summary') as { counts: Record<string, number>; outcomes: Record<string, number> };
    expect(summary.counts.pending).toBe(1);
    expect(summary.outcomes.created).toBeGreaterThanOrEqual(2);
  });

  it('prunes settled batches that left the configuration, after the retention', async () => {
    // 4100002 (cancelled) and 4100003 (created) left the file; retention is 1 s.
    await new Promise((r) => setTimeout(r, 1100));
    cron.fire('prune');
    await until(() => daemon.watcher.record('a1SimProduct1/4100002') === undefined);
    expect(daemon.watcher.record('a1SimProduct1/4100003')).toBeUndefined();
    expect(daemon.watcher.record('a1SimProduct1/4100001')).toBeDefined();
    expect(lines.some((l) => l.msg === 'ledger pruned by retention' && (l.pruned as number) >= 2)).toBe(true);
  });
});
