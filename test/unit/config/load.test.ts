import { describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import { parseConfigText } from '../../../src/config/load.js';
import type { CompiledConfig } from '../../../src/config/types.js';
import { ConfigError } from '../../../src/errors.js';

const CWD = '/srv/watcher';
const MINIMAL = 'alibaba:\n  regionId: cn-shanghai\n';

function compile(text: string): CompiledConfig {
  return parseConfigText(text, 'watcher.yaml', { cwd: CWD, env: {} });
}

function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.file}:${i.line}:${i.col}: ${i.path}: ${i.message}`);
    throw err;
  }
  throw new Error('no ConfigError');
}

const DEFAULT_POLLING = {
  initialDelayMs: 2_000,
  maxDelayMs: 60_000,
  multiplier: 2,
  stalledAfterMs: 900_000,
  timeoutMs: 86_400_000,
  awaitingRegistrationDelayMs: 300_000,
};

describe('defaults', () => {
  it('fills every default of DESIGN.md §2 from a minimal file', () => {
    expect(compile(MINIMAL)).toEqual({
      file: '/srv/watcher/watcher.yaml',
      alibaba: {
        regionId: 'cn-shanghai',
        endpoint: 'https://iot.cn-shanghai.aliyuncs.com',
        iotInstanceId: null,
        signatureVersion: 'v3',
        requestTimeoutMs: 10_000,
        credentials: 'env',
        failureWarnAfterMs: 60_000,
      },
      accounts: [
        {
          name: 'default',
          regionId: 'cn-shanghai',
          endpoint: 'https://iot.cn-shanghai.aliyuncs.com',
          iotInstanceId: null,
          signatureVersion: 'v3',
          requestTimeoutMs: 10_000,
          credentials: {
            mode: 'env',
            accessKeyIdEnv: 'ALIBABA_CLOUD_ACCESS_KEY_ID',
            accessKeySecretEnv: 'ALIBABA_CLOUD_ACCESS_KEY_SECRET',
            securityTokenEnv: 'ALIBABA_CLOUD_SECURITY_TOKEN',
          },
          rateLimit: { statusQps: 5, pageQps: 5, submitQps: 5, concurrency: 8 },
          quota: { statusQps: 5, pageQps: 5, submitQps: 5 },
          reserve: 0,
          source: null,
        },
      ],
      polling: DEFAULT_POLLING,
      rateLimit: { statusQps: 5, pageQps: 5, concurrency: 8 },
      devices: { fetch: true, includeSecrets: true },
      state: {
        backend: 'file',
        dir: '/srv/watcher/data/state',
        postgres: { urlEnv: 'IBW_DATABASE_URL', schema: 'iot_batch_watcher', leaseMs: 15_000 },
      },
      output: { resultsDir: '/srv/watcher/data/results', eventsFile: null, webhook: null },
      http: { listen: { host: '127.0.0.1', port: 9464 } },
      housekeeping: { reloadConfig: '*/1 * * * *', summary: '*/15 * * * *', prune: '0 3 * * *', retentionMs: 2_592_000_000 },
      batches: [],
    } satisfies CompiledConfig);
  });

  it('fills webhook defaults when only the url is given', () => {
    const c = compile(`${MINIMAL}output:\n  webhook:\n    url: https://hooks.example.com/iot\n`);
    expect(c.output.webhook).toEqual({ url: 'https://hooks.example.com/iot', secretEnv: 'IBW_WEBHOOK_SECRET', timeoutMs: 5_000 });
  });

  it('fills batch defaults and resolves region, endpoint and instance from alibaba', () => {
    const c = compile(`${MINIMAL}  iotInstanceId: iot-abc\nbatches:\n  - applyId: 1295006\n    productKey: a1B\n`);
    expect(c.batches).toEqual([
      {
        account: 'default',
        applyId: '1295006',
        productKey: 'a1B',
        key: 'a1B/1295006',
        name: null,
        until: 'created',
        register: false,
        iotInstanceId: 'iot-abc',
        regionId: 'cn-shanghai',
        endpoint: 'https://iot.cn-shanghai.aliyuncs.com',
        labels: {},
        polling: DEFAULT_POLLING,
        entryHash: expect.stringMatching(/^[0-9a-f]{64}$/),
        source: { file: 'watcher.yaml', line: 5, col: 5 },
      },
    ]);
  });

  it('returns a deeply frozen object', () => {
    const c = compile(`${MINIMAL}batches:\n  - { applyId: 1, productKey: p, labels: { a: b } }\n`);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.polling)).toBe(true);
    expect(Object.isFrozen(c.batches)).toBe(true);
    expect(Object.isFrozen(c.batches[0]!.labels)).toBe(true);
    expect(Object.isFrozen(c.batches[0]!.polling)).toBe(true);
  });
});

describe('per-batch overrides', () => {
  const text = `alibaba:
  regionId: cn-shanghai
  endpoint: http://127.0.0.1:8787/
  iotInstanceId: iot-main
polling:
  initialDelay: 1s
  maxDelay: 30s
  timeout: 1h
batches:
  - applyId: "1"
    productKey: a1B
  - applyId: "2"
    productKey: a1B
    name: second
    until: checked
    iotInstanceId: iot-other
    regionId: ap-southeast-1
    labels: { site: sg, line: "3" }
    polling: { maxDelay: 5m, multiplier: 1.5, awaitingRegistrationDelay: 10s }
`;

  it('merges defaults, then polling, then the batch override, key by key', () => {
    const [first, second] = compile(text).batches;
    expect(first!.polling).toEqual({ ...DEFAULT_POLLING, initialDelayMs: 1_000, maxDelayMs: 30_000, timeoutMs: 3_600_000 });
    expect(second!.polling).toEqual({
      ...DEFAULT_POLLING,
      initialDelayMs: 1_000,
      maxDelayMs: 300_000,
      multiplier: 1.5,
      timeoutMs: 3_600_000,
      awaitingRegistrationDelayMs: 10_000,
    });
  });

  it('keeps the endpoint override for the main region and uses the default endpoint of another region', () => {
    const c = compile(text);
    expect(c.alibaba.endpoint).toBe('http://127.0.0.1:8787');
    expect(c.batches[0]).toMatchObject({ regionId: 'cn-shanghai', endpoint: 'http://127.0.0.1:8787', iotInstanceId: 'iot-main' });
    expect(c.batches[1]).toMatchObject({
      regionId: 'ap-southeast-1',
      endpoint: 'https://iot.ap-southeast-1.aliyuncs.com',
      iotInstanceId: 'iot-other',
      name: 'second',
      until: 'checked',
      labels: { site: 'sg', line: '3' },
    });
  });

  it('checks initialDelay ≤ maxDelay after merging, at the key set on that level', () => {
    expect(issuesOf(() => compile(`${MINIMAL}batches:\n  - applyId: 1\n    productKey: p\n    polling: { maxDelay: 1s }\n`))).toEqual([
      'watcher.yaml:6:26: batches[0].polling.maxDelay: expected a duration ≥ initialDelay (2s, from the default), got `"1s"` (string)',
    ]);
    expect(issuesOf(() => compile(`${MINIMAL}polling:\n  initialDelay: 2m\n  maxDelay: 1m\n`))).toEqual([
      'watcher.yaml:4:17: polling.initialDelay: expected a duration ≤ maxDelay (1m, from polling.maxDelay), got `"2m"` (string)',
    ]);
  });
});

describe('ApplyIds', () => {
  it('keeps a quoted ApplyId beyond 2^53 exactly', () => {
    const c = compile(`${MINIMAL}batches:\n  - applyId: "9007199254740993"\n    productKey: a1B\n  - applyId: '9223372036854775807'\n    productKey: a1B\n`);
    expect(c.batches.map((b) => b.applyId)).toEqual(['9007199254740993', '9223372036854775807']);
    expect(c.batches[0]!.key).toBe('a1B/9007199254740993');
  });

  it('accepts the largest safe integer unquoted', () => {
    expect(compile(`${MINIMAL}batches:\n  - { applyId: 9007199254740991, productKey: p }\n`).batches[0]!.applyId).toBe('9007199254740991');
  });

  it('refuses an ApplyId beyond a Long', () => {
    expect(issuesOf(() => compile(`${MINIMAL}batches:\n  - { applyId: "9223372036854775808", productKey: p }\n`))).toEqual([
      'watcher.yaml:4:16: batches[0].applyId: expected an ApplyId: a positive integer, or a string of digits without leading ' +
        'zeros, got `"9223372036854775808"` (string): the largest ApplyId is 9223372036854775807 (a Long)',
    ]);
  });

  it('treats 123 and "123" as the same batch', () => {
    expect(issuesOf(() => compile(`${MINIMAL}batches:\n  - { applyId: 123, productKey: p }\n  - { applyId: "123", productKey: p }\n`))).toEqual([
      'watcher.yaml:5:5: batches[1]: duplicate batch p/123: the same productKey and applyId are already declared at batches[0] (line 4)',
    ]);
  });

  it('allows the same ApplyId under two products', () => {
    expect(compile(`${MINIMAL}batches:\n  - { applyId: 1, productKey: p }\n  - { applyId: 1, productKey: q }\n`).batches).toHaveLength(2);
  });
});

describe('entryHash', () => {
  const hashOf = (entry: string): string => compile(`${MINIMAL}batches:\n  - ${entry}\n`).batches[0]!.entryHash;
  const base = hashOf('{ applyId: "1", productKey: p, labels: { a: b } }');

  it('does not change when keys are reordered or the style changes', () => {
    expect(hashOf('{ productKey: p, labels: { a: b }, applyId: "1" }')).toBe(base);
    expect(compile(`${MINIMAL}batches:\n  - productKey: p # comment\n    labels:\n      a: b\n    applyId: "1"\n`).batches[0]!.entryHash).toBe(base);
  });

  it('changes when any key or value of the entry changes', () => {
    const variants = [
      '{ applyId: "1", productKey: p, labels: { a: c } }',
      '{ applyId: "1", productKey: p, labels: { a: b, x: y } }',
      '{ applyId: "1", productKey: p, labels: { a: b }, name: n }',
      '{ applyId: "1", productKey: p, labels: { a: b }, until: created }',
      '{ applyId: "1", productKey: p, labels: { a: b }, polling: { maxDelay: 5m } }',
      '{ applyId: "2", productKey: p, labels: { a: b } }',
    ];
    const hashes = variants.map(hashOf);
    for (const h of hashes) expect(h).not.toBe(base);
    expect(new Set(hashes).size).toBe(variants.length);
  });

  it('does not depend on other batches or on top-level keys', () => {
    const a = compile(`${MINIMAL}batches:\n  - { applyId: "1", productKey: p }\n`).batches[0]!.entryHash;
    const b = compile(`${MINIMAL}polling: { maxDelay: 5m }\nbatches:\n  - { applyId: "9", productKey: q }\n  - { applyId: "1", productKey: p }\n`)
      .batches[1]!.entryHash;
    expect(b).toBe(a);
  });
});

describe('paths, listen and endpoints', () => {
  it('resolves relative paths against cwd and keeps absolute ones', () => {
    const c = compile(`${MINIMAL}state: { dir: ../state }\noutput: { resultsDir: /var/results, eventsFile: ev.jsonl }\n`);
    expect(c.state.dir).toBe('/srv/state');
    expect(c.output.resultsDir).toBe('/var/results');
    expect(c.output.eventsFile).toBe('/srv/watcher/ev.jsonl');
  });

  it.each([
    ['off', null],
    ['0.0.0.0:9464', { host: '0.0.0.0', port: 9464 }],
    ['"[::1]:0"', { host: '::1', port: 0 }],
    ['localhost:65535', { host: 'localhost', port: 65535 }],
  ])('http.listen %s', (value, listen) => {
    expect(compile(`${MINIMAL}http: { listen: ${value} }\n`).http.listen).toEqual(listen);
  });

  it.each(['http://localhost:8787', 'http://127.3.4.5', 'http://[::1]:8787', 'https://iot.example.com:8443/'])(
    'accepts the endpoint %s',
    (endpoint) => {
      expect(compile(`${MINIMAL}  endpoint: "${endpoint}"\n`).alibaba.endpoint).toBe(new URL(endpoint).origin);
    },
  );

  it.each([
    ['http://192.168.1.10:8787', 'http:// is allowed only for a loopback host (127.0.0.0/8, ::1, localhost); use https://'],
    ['http://127.0.0.1.nip.io', 'http:// is allowed only for a loopback host (127.0.0.0/8, ::1, localhost); use https://'],
    ['https://iot.example.com/api', 'a path, query or fragment is not allowed'],
    ['https://user:pw@iot.example.com', 'credentials in the URL are not allowed'],
    ['ftp://iot.example.com', 'the scheme ftp: is not http: or https:'],
    ['iot.example.com', 'not a URL'],
  ])('refuses the endpoint %s', (endpoint, why) => {
    expect(issuesOf(() => compile(`${MINIMAL}  endpoint: "${endpoint}"\n`))).toEqual([
      `watcher.yaml:3:13: alibaba.endpoint: expected an https:// URL without a path, got \`"${endpoint}"\` (string): ${why}`,
    ]);
  });
});

describe('positions', () => {
  it('points a missing key at its mapping, an unknown key at the key, a bad value at the value', () => {
    expect(issuesOf(() => compile('alibaba:\n  credentials: env\n  regionI: x\nrateLimit:\n  pageQps: lots\n'))).toEqual([
      'watcher.yaml:2:3: alibaba.regionId: expected a region id like "cn-shanghai", but the key is missing',
      'watcher.yaml:3:3: alibaba.regionI: unknown key, expected one of: regionId, endpoint, iotInstanceId, signatureVersion, ' +
        'requestTimeout, credentials, failureWarnAfter (did you mean "regionId"?)',
      "watcher.yaml:5:12: rateLimit.pageQps: expected a number > 0 and ≤ 50 (Alibaba's account limit for QueryPageByApplyId is 50 QPS), got `\"lots\"` (string)",
    ]);
  });

  it('points an empty value at its key', () => {
    expect(issuesOf(() => compile(`${MINIMAL}state:\n  dir:\n`))).toEqual([
      'watcher.yaml:4:3: state.dir: expected a file system path, got an empty value (null)',
    ]);
  });

  it('reports a missing alibaba section at the root', () => {
    expect(issuesOf(() => compile('batches: []\n'))).toEqual([
      'watcher.yaml:1:1: alibaba: expected a mapping, but the key is missing',
    ]);
  });

  it('accepts accounts without an alibaba section when every account names its region, and says which does not', () => {
    const text = [
      'accounts:',
      '  - name: fleet-a',
      '    regionId: cn-shanghai',
      '  - name: fleet-b',
      '    regionId: ap-southeast-1',
      '    signatureVersion: v1',
      'batches:',
      '  - { applyId: "1", productKey: a1B }',
      '  - { account: fleet-b, applyId: "2", productKey: a1B }',
      '',
    ].join('\n');
    const c = compile(text);
    expect(c.accounts.map((a) => [a.name, a.regionId, a.endpoint, a.signatureVersion])).toEqual([
      ['fleet-a', 'cn-shanghai', 'https://iot.cn-shanghai.aliyuncs.com', 'v3'],
      ['fleet-b', 'ap-southeast-1', 'https://iot.ap-southeast-1.aliyuncs.com', 'v1'],
    ]);
    expect(c.batches.map((b) => [b.account, b.regionId])).toEqual([
      ['fleet-a', 'cn-shanghai'],
      ['fleet-b', 'ap-southeast-1'],
    ]);
    expect(issuesOf(() => compile('accounts:\n  - name: fleet-a\n  - name: fleet-b\n    regionId: cn-beijing\n'))).toEqual([
      'watcher.yaml:2:5: accounts[0].regionId: expected a region such as cn-shanghai, but the key is missing: account "fleet-a" has no alibaba section to inherit one from',
    ]);
  });

  it('reports YAML problems with their position and does not crash on aliases', () => {
    expect(issuesOf(() => compile('alibaba: *nope\n'))).toEqual([
      'watcher.yaml:1:10: : YAML problem: Unresolved alias (the anchor must be set before the alias): nope',
    ]);
    expect(issuesOf(() => compile('a: 1\n---\nb: 2\n'))[0]).toBe(
      'watcher.yaml:2:1: : YAML syntax error: Source contains multiple documents; please use YAML.parseAllDocuments()',
    );
  });

  it('reports YAML warnings (an unknown tag) and a __proto__ label instead of dropping them', () => {
    expect(issuesOf(() => compile('alibaba:\n  regionId: !!region cn-shanghai\n'))).toEqual([
      'watcher.yaml:2:13: : YAML problem: Unresolved tag: tag:yaml.org,2002:region',
    ]);
    expect(issuesOf(() => compile(`${MINIMAL}batches:\n  - { applyId: 1, productKey: p, labels: { __proto__: x } }\n`))).toEqual([
      'watcher.yaml:4:44: batches[0].labels.__proto__: expected a label name other than __proto__, which cannot be kept in an object',
    ]);
  });

  it('accepts anchors and aliases that resolve to valid values', () => {
    const c = compile(`${MINIMAL}polling: &p { maxDelay: 5m }\nbatches:\n  - { applyId: 1, productKey: p, polling: *p }\n`);
    expect(c.batches[0]!.polling.maxDelayMs).toBe(300_000);
  });
});

describe('compileConfigObject', () => {
  it('compiles a programmatic config without positions', () => {
    const c = compileConfigObject(
      { alibaba: { regionId: 'cn-shanghai' }, batches: [{ applyId: '1295006', productKey: 'a1B', polling: { timeout: 60_000 } }] },
      { cwd: '/x' },
    );
    expect(c.file).toBeNull();
    expect(c.state.dir).toBe('/x/data/state');
    expect(c.batches[0]).toMatchObject({ key: 'a1B/1295006', source: null, polling: { ...DEFAULT_POLLING, timeoutMs: 60_000 } });
  });

  it('reports issues with file <object> at 0:0 and names other entries by path', () => {
    const raw = {
      alibaba: { regionId: 'cn-shanghai', extra: true },
      batches: [
        { applyId: 5, productKey: 'p' },
        { applyId: '5', productKey: 'p' },
      ],
    };
    expect(issuesOf(() => compileConfigObject(raw))).toEqual([
      '<object>:0:0: alibaba.extra: unknown key, expected one of: regionId, endpoint, iotInstanceId, signatureVersion, requestTimeout, credentials, failureWarnAfter',
      '<object>:0:0: batches[1]: duplicate batch p/5: the same productKey and applyId are already declared at batches[0]',
    ]);
  });

  it('refuses non-objects and unsafe integers without throwing anything else', () => {
    expect(issuesOf(() => compileConfigObject(undefined))).toEqual([
      '<object>:0:0: : expected a mapping of configuration sections (alibaba, polling, batches, …), but the key is missing',
    ]);
    expect(issuesOf(() => compileConfigObject({ alibaba: { regionId: 'x' }, batches: [{ applyId: 2 ** 53 + 2, productKey: 'p' }] }))).toEqual([
      '<object>:0:0: batches[0].applyId: expected an ApplyId: a positive integer, or a string of digits without leading zeros, got ' +
        '`9007199254740994` (number): integers above 9007199254740991 (2^53 - 1) lose precision, so write this ApplyId as a quoted string, "9007199254740994"',
    ]);
  });
});

describe('key paths in messages', () => {
  it('quotes keys that are not plain words, so a path is never blank', () => {
    let error: unknown;
    try {
      parseConfigText('alibaba: { regionId: cn-shanghai }\n"  ": 1\nbatches:\n  - { applyId: "1", productKey: p, labels: { "a b": 1 } }\n', 'w.yaml');
    } catch (err) {
      error = err;
    }
    const paths = (error as ConfigError).issues.map((i) => i.path);
    expect(paths).toContain('["  "]');
    expect(paths).toContain('batches[0].labels["a b"]');
  });
});
