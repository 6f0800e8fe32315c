import { describe, expect, it } from 'vitest';

import { parseConfigText } from '../../../src/config/load.js';
import { WaitFlagsError, compileWaitConfig } from '../../../src/config/wait-config.js';

function problems(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof WaitFlagsError) return err.problems;
    throw err;
  }
  throw new Error('no WaitFlagsError');
}

describe('compileWaitConfig', () => {
  it('without a file: the defaults, the production endpoint of the region, one batch', () => {
    const c = compileWaitConfig({ productKey: 'a1B', applyId: '1295006' }, null, '/w');
    expect(c.alibaba.endpoint).toBe('https://iot.cn-shanghai.aliyuncs.com');
    expect(c.batches).toHaveLength(1);
    expect(c.batches[0]).toMatchObject({ key: 'a1B/1295006', until: 'created', register: false, endpoint: 'https://iot.cn-shanghai.aliyuncs.com' });
    expect(c.polling.timeoutMs).toBe(86_400_000);
    expect(c.http.listen).toBeNull();
  });

  it('flags override the file; the file\'s batches, events file and webhook are not used', () => {
    const base = parseConfigText(
      [
        'alibaba: { regionId: cn-shanghai, endpoint: "http://127.0.0.1:8787", iotInstanceId: iot-1 }',
        'polling: { initialDelay: 1s, maxDelay: 4s }',
        'rateLimit: { statusQps: 2 }',
        'output: { eventsFile: ./e.jsonl, webhook: { url: "https://hooks.example.com/x" } }',
        'batches:',
        '  - { applyId: "1", productKey: p }',
        '',
      ].join('\n'),
      'w.yaml',
      { cwd: '/w', env: {} },
    );
    const c = compileWaitConfig({ productKey: 'a1B', applyId: '7', until: 'checked', timeout: '30m' }, base, '/w');
    expect(c.alibaba.endpoint).toBe('http://127.0.0.1:8787');
    expect(c.rateLimit.statusQps).toBe(2);
    expect(c.batches.map((b) => b.key)).toEqual(['a1B/7']);
    expect(c.batches[0]).toMatchObject({ until: 'checked', iotInstanceId: 'iot-1', endpoint: 'http://127.0.0.1:8787' });
    expect(c.batches[0]!.polling).toMatchObject({ initialDelayMs: 1000, maxDelayMs: 4000, timeoutMs: 1_800_000 });
    expect(c.output.eventsFile).toBeNull();
    expect(c.output.webhook).toBeNull();
    // Another region: that region's endpoint, not the file's.
    const other = compileWaitConfig({ productKey: 'a1B', applyId: '7', regionId: 'ap-southeast-1' }, base, '/w');
    expect(other.alibaba.endpoint).toBe('https://iot.ap-southeast-1.aliyuncs.com');
    expect(compileWaitConfig({ productKey: 'a1B', applyId: '7', endpoint: 'http://127.0.0.1:9/' }, base, '/w').alibaba.endpoint).toBe('http://127.0.0.1:9');
  });

  it('names every bad or missing flag in the words of the command line', () => {
    expect(problems(() => compileWaitConfig({}, null, '/w'))).toEqual([
      '--product-key: required (the ProductKey of the batch)',
      '--apply-id: required (the ApplyId to watch)',
    ]);
    expect(
      problems(() =>
        compileWaitConfig({ productKey: 'a 1', applyId: 'abc', timeout: 'soon', until: 'done', endpoint: 'http://example.com', regionId: 'CN' }, null, '/w'),
      ),
    ).toEqual([
      expect.stringMatching(/^--endpoint: expected an https:\/\/ URL without a path, got `"http:\/\/example\.com"` \(string\): http:\/\/ is allowed only for a loopback host/),
      expect.stringMatching(/^--apply-id: expected an ApplyId: a positive integer, or a string of digits without leading zeros, got `"abc"` \(string\)$/),
      expect.stringMatching(/^--product-key: expected a ProductKey/),
      expect.stringMatching(/^--until: expected "created" or "checked", got `"done"` \(string\)$/),
      expect.stringMatching(/^--region-id: expected a region id like "cn-shanghai"/),
      expect.stringMatching(/^--timeout: expected a duration > 0 like "30s", "5m" or milliseconds, got `"soon"` \(string\)$/),
    ]);
    expect(problems(() => compileWaitConfig({ productKey: 'p', applyId: '1', until: 'checked', register: true }, null, '/w'))).toEqual([
      expect.stringMatching(/^--register: expected register: false with until: checked/),
    ]);
  });
});
