/**
 * Scenario files: the demo scenario plays out as documented, and invalid files get positioned messages.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import Ajv from 'ajv';
import { afterEach, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

import { createManualClock, type ManualClock } from '../../../src/core/clock.js';
import { ConfigError } from '../../../src/errors.js';
import { loadScenario, parseScenario, startSimulator, type SimulatorHandle } from '../../../src/simulator/index.js';
import { renderScenarioJsonSchema } from '../../../src/simulator/scenario-schema.js';
import { rawCall, type Loose } from './helpers.js';

const DEMO = fileURLToPath(new URL('../../../config/demo-scenario.yaml', import.meta.url));

let sim: SimulatorHandle | undefined;
let clock: ManualClock;

afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

describe('config/demo-scenario.yaml', () => {
  it('covers created, check failed, partial failure and a batch awaiting registration, all settled within seconds', async () => {
    const scenario = await loadScenario(DEMO);
    clock = createManualClock(Date.UTC(2026, 0, 5, 10, 0, 0));
    sim = await startSimulator({ port: 0, clock, scenario });
    const status = async (pk: string, applyId: string): Promise<{ text: string; json: Loose }> =>
      rawCall(sim!.port, { action: 'QueryBatchRegisterDeviceStatus', params: { ProductKey: pk, ApplyId: applyId }, now: clock.now() });
    expect((await status('a1SimProduct1', '1300001')).json.Data.Status).toBe('CHECK');
    await clock.advance(10_000);

    expect((await status('a1SimProduct1', '1300001')).json.Data.Status).toBe('CREATE_SUCCESS');
    const failed = (await status('a1SimProduct1', '1300002')).json.Data;
    expect(failed.Status).toBe('CHECK_FAILED');
    expect(failed.InvalidList.Name.sort()).toEqual(['ab', 'lamp-legacy-01']);
    expect(failed.ValidList.Name).toEqual(['door-0001', 'door-0004']);
    const partial = (await status('a1SimProduct2', '1300003')).json.Data;
    expect(partial.Status).toBe('CREATE_FAILED');
    expect(partial.ValidList.Name).toEqual(['meter-0001', 'meter-0002', 'meter-0004', 'meter-0005']);
    expect(partial.InvalidDetailList.invalidDetailList.map((d: Loose) => d.DeviceName)).toEqual(['meter-0003', 'meter-0006']);
    expect((await status('a1SimProduct2', '1300004')).json.Data.Status).toBe('CHECK_SUCCESS');
    const big = await status('a1SimProduct1', '9007199254740993');
    expect(big.json.Data.Status).toBe('CREATE_SUCCESS');

    const reg = await rawCall(sim.port, {
      action: 'BatchRegisterDeviceWithApplyId',
      params: { ProductKey: 'a1SimProduct2', ApplyId: '1300004' },
      now: clock.now(),
    });
    expect(reg.text).toContain('"ApplyId":1300004');
    await clock.advance(3000);
    expect((await status('a1SimProduct2', '1300004')).json.Data.Status).toBe('CREATE_SUCCESS');
    const page = await rawCall(sim.port, { action: 'QueryPageByApplyId', params: { ApplyId: '9007199254740993', PageSize: '50' }, now: clock.now() });
    expect(page.json.Total).toBe(8);
    expect(sim.control.devices('a1SimProduct1').map((d) => d.deviceName)).toContain('lamp-legacy-01');
  });
});

describe('parseScenario', () => {
  it('reports every problem with its line and column', () => {
    const text = [
      'products: [a1P]',
      'batches:',
      '  - applyId: 1300001',
      '    productKey: a1P',
      '  - productKey: a1P',
      '    mode: random',
      '    outcome: check_failed',
      '    count: 3',
      '  - productKey: a1P',
      '    deviceNames: [a-0001]',
      '    failNames: [zzz-0001]',
      '    outcome: partial',
      '    colour: red',
    ].join('\n');
    let err: unknown;
    try {
      parseScenario(text, 'demo.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const issues = (err as ConfigError).issues;
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i]));
    expect(byPath['batches[0].applyId']).toMatchObject({ file: 'demo.yaml', line: 3 });
    expect(byPath['batches[0].applyId']!.message).toMatch(/quote it/);
    expect(issues.some((i) => i.path.startsWith('batches[2]') && i.line >= 9)).toBe(true);
    expect(issues.find((i) => i.message.includes('colour'))).toBeDefined();
  });

  it('rejects duplicate ApplyIds', () => {
    const text = 'batches:\n  - {applyId: "1300001", productKey: p, mode: random, count: 1}\n  - {applyId: "1300001", productKey: p, mode: random, count: 2}\n';
    expect(() => parseScenario(text, 's.yaml')).toThrow(/s\.yaml:3:\d+: batches\[1\]\.applyId: duplicates batches\[0\]\.applyId/);
  });

  it('parses products given as strings or objects and defaults the rest', () => {
    const s = parseScenario('products: [a1A, {productKey: a1B, devices: [d-0001]}]\nbatches:\n  - productKey: a1A\n    deviceNames: [n-0001]\n');
    expect(s.products).toEqual([
      { productKey: 'a1A', devices: [] },
      { productKey: 'a1B', devices: ['d-0001'] },
    ]);
    expect(s.iotInstanceId).toBeNull();
    expect(s.batches[0]).toMatchObject({ mode: 'custom', outcome: 'success', registered: false, ageMs: 0 });
  });
});

describe('config/scenario.schema.json', () => {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const schemaText = readFileSync(`${root}config/scenario.schema.json`, 'utf8');
  // NOTE: ajv 6 comes with eslint (draft-07 is what the schema targets); it is only a test-time checker here.
  const ajv = new Ajv({ allErrors: true });
  const validate = ajv.compile(JSON.parse(schemaText) as object);

  it('is the schema generated from the zod schema (run `npm run gen:schema` after changing it)', () => {
    expect(schemaText).toBe(renderScenarioJsonSchema());
  });

  it('config/demo-scenario.yaml validates against it and points editors at it', () => {
    const text = readFileSync(DEMO, 'utf8');
    expect(text.split('\n')[0]).toBe('# yaml-language-server: $schema=./scenario.schema.json');
    expect(validate(parseYaml(text)), JSON.stringify(validate.errors)).toBe(true);
  });

  it('rejects what the simulator rejects: unknown keys, numeric ApplyIds, unknown outcomes', () => {
    const bad = [
      { batches: [{ productKey: 'p', mode: 'random', count: 1, colour: 'red' }] },
      { batches: [{ applyId: 1300001, productKey: 'p', deviceNames: ['a'] }] },
      { batches: [{ productKey: 'p', deviceNames: ['a'], outcome: 'maybe' }] },
      { extra: true },
    ];
    for (const doc of bad) {
      expect(validate(doc), JSON.stringify(doc)).toBe(false);
      expect(() => parseScenario(stringifyYaml(doc))).toThrow(ConfigError);
    }
  });
});
