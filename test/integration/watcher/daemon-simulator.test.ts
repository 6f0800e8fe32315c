import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import { Daemon } from '../../../src/daemon.js';
import { createLogger } from '../../../src/ops/logger.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';
import type { ScenarioBatchInput } from '../../../src/simulator/scenario.js';

const credentials = {
  get: async () => ({ accessKeyId: 'SimAccessKeyId', accessKeySecret: 'SimAccessKeySecret', securityToken: null }),
};

interface Plan {
  sim: ScenarioBatchInput | null;
  batch: Record<string, unknown>;
  expected: string;
}

function plans(): Plan[] {
  const out: Plan[] = [];
  const kinds = ['created', 'check_failed', 'partial', 'random', 'register', 'checked', 'never', 'unknown'] as const;
  for (let i = 0; i < 200; i += 1) {
    const kind = kinds[i % kinds.length]!;
    const applyId = String(5_000_000 + i);
    const names = Array.from({ length: 3 + (i % 4) }, (_, j) => `dev-${i}-${j}`);
    const productKey = i % 2 === 0 ? 'a1SimProduct1' : 'a1SimProduct2';
    const base = { applyId, productKey };
    switch (kind) {
      case 'created':
        out.push({ sim: { ...base, mode: 'custom', deviceNames: names, registered: true }, batch: base, expected: 'created' });
        break;
      case 'check_failed':
        out.push({ sim: { ...base, mode: 'custom', deviceNames: [...names, 'x'], outcome: 'check_failed' }, batch: base, expected: 'check_failed' });
        break;
      case 'partial':
        out.push({ sim: { ...base, mode: 'custom', deviceNames: names, registered: true, outcome: 'partial', failNames: [names[0]!] }, batch: base, expected: 'create_failed' });
        break;
      case 'random':
        out.push({ sim: { ...base, mode: 'random', count: 4 }, batch: base, expected: 'created' });
        break;
      case 'register':
        out.push({ sim: { ...base, mode: 'custom', deviceNames: names, registered: false }, batch: { ...base, register: true }, expected: 'created' });
        break;
      case 'checked':
        out.push({ sim: { ...base, mode: 'custom', deviceNames: names, registered: false }, batch: { ...base, until: 'checked' }, expected: 'checked' });
        break;
      case 'never':
        out.push({ sim: { ...base, mode: 'random', count: 2, outcome: 'never' }, batch: { ...base, polling: { timeout: '4s' } }, expected: 'timed_out' });
        break;
      case 'unknown':
        out.push({ sim: null, batch: base, expected: 'rejected' });
        break;
    }
  }
  return out;
}

describe('the daemon against the simulator: 200 batches of mixed scenarios', () => {
  let sim: SimulatorHandle;
  let dir: string;
  let daemon: Daemon;
  const logLines: string[] = [];
  const all = plans();
  const statusQps = 28;
  const initialDelayMs = 300;

  beforeAll(async () => {
    sim = await startSimulator({ port: 0, timeScale: 20, seed: 42 });
    for (const p of all) if (p.sim) sim.control.addBatch(p.sim);
    dir = await mkdtemp(join(tmpdir(), 'ibw-int-'));
    const config = compileConfigObject(
      {
        alibaba: { regionId: 'cn-shanghai', endpoint: sim.url },
        polling: { initialDelay: `${initialDelayMs}ms`, maxDelay: '1s', timeout: '60s', awaitingRegistrationDelay: '1s' },
        rateLimit: { statusQps, pageQps: 20, concurrency: 8 },
        state: { dir: join(dir, 'state') },
        output: { resultsDir: join(dir, 'results'), eventsFile: join(dir, 'events.jsonl') },
        http: { listen: 'off' },
        batches: all.map((p) => p.batch),
      },
      { cwd: dir },
    );
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    daemon = new Daemon({ config, logger: createLogger({ level: 'trace', destination: sink }), env: {}, credentials, housekeeping: false });
    await daemon.start();
    await daemon.whenAllSettled();
    await daemon.flushSinks(5000);
    await daemon.stop();
  }, 120_000);

  afterAll(async () => {
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('settles every batch with the right outcome', () => {
    const rows = new Map(daemon.watcher.list().map((r) => [r.applyId, r]));
    const wrong = all.filter((p) => rows.get(String(p.batch.applyId))?.outcome !== p.expected);
    expect(wrong.map((p) => `${String(p.batch.applyId)}: expected ${p.expected}, got ${rows.get(String(p.batch.applyId))?.outcome}`)).toEqual([]);
  });

  it('registers each register:true batch exactly once, and no other', () => {
    for (const p of all) {
      const expected = p.batch.register === true ? 1 : 0;
      expect(sim.control.registrations(String(p.batch.applyId)), String(p.batch.applyId)).toBe(expected);
    }
  });

  it('keeps the status QPS at or under the configured rate in every 1-second window', () => {
    const times = sim.control
      .requestLog()
      .filter((e) => e.action === 'QueryBatchRegisterDeviceStatus')
      .map((e) => e.at)
      .sort((a, b) => a - b);
    expect(times.length).toBeGreaterThan(200);
    let max = 0;
    let j = 0;
    for (let i = 0; i < times.length; i += 1) {
      while (times[i]! - times[j]! >= 1000) j += 1;
      max = Math.max(max, i - j + 1);
    }
    expect(max).toBeLessThanOrEqual(statusQps);
    expect(sim.control.requestLog().filter((e) => e.outcome.startsWith('Throttling'))).toEqual([]);
  });

  it('polls no batch more often than its backoff allows', () => {
    const byBatch = new Map<string, number[]>();
    for (const e of sim.control.requestLog()) {
      if (e.action !== 'QueryBatchRegisterDeviceStatus' || !e.applyId) continue;
      byBatch.set(e.applyId, [...(byBatch.get(e.applyId) ?? []), e.at]);
    }
    let minGap = Infinity;
    for (const times of byBatch.values()) for (let i = 1; i < times.length; i += 1) minGap = Math.min(minGap, times[i]! - times[i - 1]!);
    // Server-side arrival times: allow a little network jitter below the 300 ms floor.
    expect(minGap).toBeGreaterThanOrEqual(initialDelayMs - 30);
  });

  it('writes result files that match the simulator, 0600, and secrets only there', async () => {
    const created = all.filter((p) => p.expected === 'created' || p.expected === 'create_failed');
    for (const p of created.slice(0, 40)) {
      const file = join(dir, 'results', String(p.batch.productKey), `${String(p.batch.applyId)}.json`);
      const st = await stat(file);
      expect(st.mode & 0o777).toBe(0o600);
      const result = JSON.parse(await readFile(file, 'utf8')) as { devices: { deviceName: string; iotId: string; deviceSecret: string }[]; deviceCount: number };
      const snap = sim.control.batch(String(p.batch.applyId))!;
      const simDevices = sim.control.devices(String(p.batch.productKey)).filter((d) => snap && result.devices.some((r) => r.deviceName === d.deviceName));
      expect(result.deviceCount).toBe(result.devices.length);
      expect(result.devices.length).toBeGreaterThan(0);
      expect(simDevices.length).toBe(result.devices.length);
      for (const d of result.devices) {
        const s = simDevices.find((x) => x.deviceName === d.deviceName)!;
        expect(d.iotId).toBe(s.iotId);
        expect(d.deviceSecret).toBe(s.deviceSecret);
        expect(logLines.some((l) => l.includes(d.deviceSecret))).toBe(false);
      }
    }
    const events = await readFile(join(dir, 'events.jsonl'), 'utf8');
    expect(events).not.toMatch(/deviceSecret|DeviceSecret/);
    expect(logLines.some((l) => l.includes('SimAccessKeySecret'))).toBe(false);
  });

  it('emits one batch.settled per batch in the events file', async () => {
    const events = (await readFile(join(dir, 'events.jsonl'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; applyId: string; id: string });
    const settled = events.filter((e) => e.type === 'batch.settled');
    expect(new Set(settled.map((e) => e.applyId)).size).toBe(200);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  });
});
