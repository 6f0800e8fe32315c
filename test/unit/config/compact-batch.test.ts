/**
 * Compact BatchConfigs (src/config/compact-batch.ts): `source` read on demand must look, to every reader (property
 * access, spread, JSON, deep equality, freezing), exactly like the plain `{ file, line, col }` it replaces; the own
 * copies of strings must equal the originals character for character. Memory itself is measured by the yaml-scale
 * benchmark, not here.
 */
import { describe, expect, it } from 'vitest';

import { StringPool, compactBatch, movedBatch, ownString, type BatchFields } from '../../../src/config/compact-batch.js';
import { parseConfigText } from '../../../src/config/load.js';

const FIELDS: BatchFields = {
  account: 'default',
  applyId: '1295006',
  productKey: 'a1BwAGVxxxxLongKey',
  key: 'a1BwAGVxxxxLongKey/1295006',
  name: 'line-7',
  until: 'created',
  register: false,
  iotInstanceId: null,
  regionId: 'cn-shanghai',
  endpoint: 'https://iot.cn-shanghai.aliyuncs.com',
  labels: Object.freeze({ team: 'a' }),
  polling: Object.freeze({ initialDelayMs: 1, maxDelayMs: 2, multiplier: 2, stalledAfterMs: 3, timeoutMs: 4, awaitingRegistrationDelayMs: 5 }),
  entryHash: 'ab'.repeat(32),
};

describe('compactBatch', () => {
  it('reads as the plain BatchConfig: fields, source, keys in order, JSON, spread, equality', () => {
    const plain = { ...FIELDS, source: { file: 'conf/watcher.yaml', line: 42, col: 5 } };
    const batch = compactBatch(FIELDS, { file: 'conf/watcher.yaml', line: 42, col: 5 });
    expect(batch.source).toEqual({ file: 'conf/watcher.yaml', line: 42, col: 5 });
    expect(Object.keys(batch)).toEqual(Object.keys(plain));
    expect(JSON.stringify(batch)).toBe(JSON.stringify(plain));
    expect(batch).toEqual(plain);
    const spread = { ...batch };
    expect(spread).toEqual(plain);
    expect(Object.getOwnPropertyDescriptor(spread, 'source')?.value).toEqual(plain.source);
    expect(Object.getOwnPropertySymbols(batch)).toEqual([]);
  });

  it('is frozen, and so is the source it gives', () => {
    const batch = compactBatch(FIELDS, { file: 'w.yaml', line: 3, col: 7 });
    expect(Object.isFrozen(batch)).toBe(true);
    expect(Object.isFrozen(batch.source)).toBe(true);
    expect(() => {
      (batch as { name: string | null }).name = 'other';
    }).toThrow(TypeError);
  });

  it('keeps positions beyond the packed range exactly', () => {
    for (const [line, col] of [
      [0, 0],
      [1, 2047],
      [1, 2048],
      [(1 << 20) - 1, 2047],
      [1 << 20, 1],
      [3_000_000_000, 70_000],
    ] as const) {
      expect(compactBatch(FIELDS, { file: 'w.yaml', line, col }).source).toEqual({ file: 'w.yaml', line, col });
    }
  });

  it('names the file of each batch when several files are loaded', () => {
    const a = compactBatch(FIELDS, { file: 'a.yaml', line: 1, col: 3 });
    const b = compactBatch(FIELDS, { file: 'b.yaml', line: 2, col: 5 });
    expect([a.source, b.source]).toEqual([
      { file: 'a.yaml', line: 1, col: 3 },
      { file: 'b.yaml', line: 2, col: 5 },
    ]);
  });

  it('gives a plain null source without a position', () => {
    const batch = compactBatch(FIELDS, null);
    expect(batch).toEqual({ ...FIELDS, source: null });
    expect(Object.isFrozen(batch)).toBe(true);
  });

  it('movedBatch: the same batch at another line, every other field kept', () => {
    const batch = compactBatch(FIELDS, { file: 'w.yaml', line: 10, col: 5 });
    const moved = movedBatch(batch, 13);
    expect(moved).toEqual({ ...FIELDS, source: { file: 'w.yaml', line: 13, col: 5 } });
    expect(batch.source).toEqual({ file: 'w.yaml', line: 10, col: 5 });
    expect(Object.isFrozen(moved)).toBe(true);
    expect(movedBatch(compactBatch(FIELDS, null), 13).source).toBeNull();
  });
});

describe('ownString and StringPool', () => {
  const samples = [
    '',
    'a1B',
    'a1BwAGVxxxxLongKey',
    'quote " and backslash \\ and slash /',
    'control \u0000\u0001\n\t\u001f and DEL \u007f',
    'unicode 设备名称-产品 ✓ 😀',
    'lone surrogates \ud800 x \udfff end',
    'x'.repeat(10_000),
  ];

  it('copies are equal to the original', () => {
    for (const s of samples) expect(ownString(s)).toBe(s);
    const text = `prefix ${samples.join('|')} suffix`;
    // A slice and a concatenation of a larger text, the kinds of string the YAML reader and batchKey produce.
    expect(ownString(text.slice(7, 40))).toBe(text.slice(7, 40));
    expect(ownString(`${samples[2]!}/${samples[5]!}`)).toBe(`${samples[2]!}/${samples[5]!}`);
  });

  it('the pool gives back an equal string, the same one for equal values', () => {
    const pool = new StringPool();
    for (const s of samples) expect(pool.shared(s)).toBe(s);
    expect(pool.sharedOrNull(null)).toBeNull();
    expect(pool.sharedOrNull(undefined)).toBeUndefined();
  });
});

describe('compiled batches from YAML', () => {
  it('positions and values as written, with labels and until shared', () => {
    const text = [
      'alibaba:',
      '  regionId: cn-shanghai',
      'batches:',
      '  - applyId: "1000000000000001"',
      '    productKey: a1BwAGVxxxxLongKey',
      '    name: a-name-longer-than-thirteen',
      '    until: checked',
      '    labels: { team: platform-devices-long, env: prod }',
      '  - applyId: 2',
      '    productKey: a1BwAGVxxxxLongKey',
      '    regionId: cn-beijing',
      '    labels: { team: platform-devices-long }',
      '',
    ].join('\n');
    const c = parseConfigText(text, 'w.yaml', { cwd: '/srv' });
    expect(c.batches.map((b) => ({ ...b, entryHash: '' }))).toEqual([
      {
        ...FIELDS,
        applyId: '1000000000000001',
        key: 'a1BwAGVxxxxLongKey/1000000000000001',
        name: 'a-name-longer-than-thirteen',
        until: 'checked',
        labels: { team: 'platform-devices-long', env: 'prod' },
        polling: c.polling,
        entryHash: '',
        source: { file: 'w.yaml', line: 4, col: 5 },
      },
      {
        ...FIELDS,
        applyId: '2',
        key: 'a1BwAGVxxxxLongKey/2',
        name: null,
        regionId: 'cn-beijing',
        endpoint: 'https://iot.cn-beijing.aliyuncs.com',
        labels: { team: 'platform-devices-long' },
        polling: c.polling,
        entryHash: '',
        source: { file: 'w.yaml', line: 9, col: 5 },
      },
    ]);
    expect(Object.isFrozen(c.batches[0]!.labels)).toBe(true);
  });
});
