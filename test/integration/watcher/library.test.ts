import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { ConfigError, createWatcher, startSimulator, type WatcherEvent } from '../../../src/index.js';
import { createLogger } from '../../../src/ops/logger.js';

describe('createWatcher (library use)', () => {
  let dir = '';
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('emits typed events to listeners, survives a throwing listener, and closes cleanly', async () => {
    const sim = await startSimulator({ port: 0, timeScale: 20 });
    try {
      sim.control.addBatch({ applyId: '3100001', productKey: 'a1SimProduct1', mode: 'custom', deviceNames: ['lib-0001', 'lib-0002'] });
      dir = await mkdtemp(join(tmpdir(), 'ibw-lib-'));
      const watcher = createWatcher(
        {
          alibaba: { regionId: 'cn-shanghai', endpoint: sim.url },
          polling: { initialDelay: '100ms', maxDelay: '500ms' },
          state: { dir: join(dir, 'state') },
          output: { resultsDir: join(dir, 'results') },
          http: { listen: 'off' },
          batches: [{ applyId: '3100001', productKey: 'a1SimProduct1', register: true, labels: { site: 'lab' } }],
        },
        {
          env: { ALIBABA_CLOUD_ACCESS_KEY_ID: 'SimAccessKeyId', ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'SimAccessKeySecret' },
          logger: createLogger({ level: 'silent' }),
        },
      );
      const settled: WatcherEvent[] = [];
      const all: string[] = [];
      watcher.on('batch.settled', (event) => {
        settled.push(event);
      });
      watcher.on('*', (event) => {
        all.push(event.type);
      });
      watcher.on('batch.status_changed', () => {
        throw new Error('a broken listener');
      });
      await watcher.start();
      await watcher.whenAllSettled();
      const result = await watcher.close();
      expect(result.reason).toBe('stopped');
      expect(settled).toHaveLength(1);
      expect(settled[0]).toMatchObject({ type: 'batch.settled', applyId: '3100001', outcome: 'created', labels: { site: 'lab' }, deviceCount: 2 });
      expect(all).toContain('batch.registration_requested');
      expect(all.at(-1)).toBe('batch.settled');
      const file = JSON.parse(await readFile(settled[0]!.resultFile!, 'utf8')) as { devices: { deviceSecret?: string }[] };
      expect(file.devices.every((d) => typeof d.deviceSecret === 'string')).toBe(true);
      expect(JSON.stringify(settled)).not.toMatch(/deviceSecret/);
      expect(watcher.list()[0]?.outcome).toBe('created');
    } finally {
      await sim.close();
    }
  });

  it('throws a ConfigError listing every problem of a raw object', () => {
    let error: unknown;
    try {
      createWatcher({ alibaba: { regionId: 'cn-shanghai', bogus: 1 }, rateLimit: { statusQps: 'fast' }, batches: [{ productKey: 'p' }] });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const paths = (error as ConfigError).issues.map((i) => i.path).sort();
    expect(paths).toEqual(['alibaba.bogus', 'batches[0].applyId', 'rateLimit.statusQps']);
  });
});
