import { Writable } from 'node:stream';

import { describe, expect, it } from 'vitest';

import { Daemon } from '../../../src/daemon.js';
import { createLogger } from '../../../src/ops/logger.js';
import { testConfig } from '../../helpers/config.js';
import { MemoryResults, MemoryStore } from '../../helpers/fakes.js';

const credentials = { get: () => Promise.resolve({ accessKeyId: 'id', accessKeySecret: 'secret', securityToken: null }) };

function daemonOver(ledger: MemoryStore, lines: Record<string, unknown>[]): Daemon {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return new Daemon({
    config: testConfig(),
    logger: createLogger({ level: 'info', destination: sink }),
    env: {},
    credentials,
    ledger,
    results: new MemoryResults(),
    http: false,
    housekeeping: false,
  });
}

describe('Daemon.stop() when the state cannot be flushed', () => {
  it('reports a clean stop when compaction and close succeed', async () => {
    const lines: Record<string, unknown>[] = [];
    const ledger = new MemoryStore();
    const daemon = daemonOver(ledger, lines);
    await daemon.start();
    expect(daemon.isReady()).toBe(true);
    const result = await daemon.stop();
    expect(result).toEqual({ reason: 'stopped', error: null, flushError: null });
    expect(ledger.compactions).toBe(1);
  });

  it('reports the compaction failure (readiness false), and a failing close', async () => {
    const lines: Record<string, unknown>[] = [];
    const ledger = new MemoryStore();
    ledger.compact = () => Promise.reject(new Error('EROFS: read-only file system'));
    const daemon = daemonOver(ledger, lines);
    await daemon.start();
    const result = await daemon.stop();
    expect(result.reason).toBe('stopped');
    expect(result.flushError?.code).toBe('LedgerCompact');
    expect(result.flushError?.message).toContain('EROFS');
    expect(daemon.isReady()).toBe(false);

    const closing = new MemoryStore();
    closing.close = () => Promise.reject(new Error('EACCES: cannot remove the lock'));
    const second = daemonOver(closing, []);
    await second.start();
    expect((await second.stop()).flushError?.code).toBe('LedgerClose');
  });

  it('logs one start-up line naming the account, region, endpoint, signature version, budget and locations', async () => {
    const lines: Record<string, unknown>[] = [];
    const daemon = daemonOver(new MemoryStore(), lines);
    await daemon.start();
    await daemon.stop();
    const running = lines.filter((l) => l.msg === 'iot-batch-watcher running');
    expect(running).toHaveLength(1);
    expect(running[0]).toMatchObject({
      account: 'default',
      regionId: 'cn-shanghai',
      endpoint: 'http://127.0.0.1:1',
      signatureVersion: 'v3',
      budget: { statusQps: 5, pageQps: 5, concurrency: 4 },
      stateDir: '/nonexistent',
      resultsDir: '/nonexistent',
    });
  });
});
