/**
 * `provision` entries (DESIGN.md §13): defaults, compiled shape, and every rule with its file:line:col.
 */

import { describe, expect, it } from 'vitest';

import { parseConfigText, parseConfigTextFully } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';

const HEAD = 'alibaba:\n  regionId: cn-shanghai\n';

function issuesOf(text: string): string[] {
  try {
    parseConfigText(text, 'w.yaml', { cwd: '/srv' });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.map((i) => `${i.line}:${i.col}: ${i.path}: ${i.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('provision entries', () => {
  it('compiles a devices job with defaults and a count job with its own values', () => {
    const text =
      HEAD +
      'provision:\n' +
      '  - name: line-4\n    productKey: a1B\n    devices: ./fleet/line-4.csv\n' +
      '  - name: spare\n    productKey: a1B\n    account: fleet-cn\n    count: 2500\n    chunkSize: 10000\n    until: checked\n    labels: { site: sh }\n';
    for (const parse of [parseConfigText, parseConfigTextFully]) {
      const c = parse(text, 'w.yaml', { cwd: '/srv' });
      expect(c.provision).toEqual([
        {
          name: 'line-4',
          productKey: 'a1B',
          account: null,
          source: { kind: 'devices', file: '/srv/fleet/line-4.csv' },
          chunkSize: 1000,
          until: 'created',
          labels: {},
          position: expect.objectContaining({ file: 'w.yaml' }),
        },
        {
          name: 'spare',
          productKey: 'a1B',
          account: 'fleet-cn',
          source: { kind: 'count', count: 2500 },
          chunkSize: 10_000,
          until: 'checked',
          labels: { site: 'sh' },
          position: expect.objectContaining({ file: 'w.yaml' }),
        },
      ]);
    }
  });

  it('leaves provision out of a configuration without jobs', () => {
    expect(parseConfigText(HEAD, 'w.yaml').provision).toBeUndefined();
  });

  it('reports devices with count, neither, bad bounds and duplicate names with positions', () => {
    const text =
      HEAD +
      'provision:\n' +
      '  - name: a\n    productKey: a1B\n    devices: d.txt\n    count: 5\n' + // 4-7
      '  - name: b\n    productKey: a1B\n' + // 8-9
      '  - name: A\n    productKey: a1B\n    count: 0\n    chunkSize: 10001\n' + // 10-13
      '  - name: .hidden\n    productKey: a1B\n    count: 1\n    until: done\n'; // 14-17
    expect(issuesOf(text)).toEqual([
      '7:5: provision[0].count: expected either devices or count, got both: a job submits the names of a file or a number of random names, not both',
      '8:5: provision[1]: expected devices (a device file) or count (a number of devices), got neither',
      '10:11: provision[2].name: duplicate provisioning job "A": the name is already used at provision[0] (line 4) (names are compared without case)',
      '12:12: provision[2].count: expected an integer from 1 to 3000000, got `0` (number)',
      '13:16: provision[2].chunkSize: expected an integer from 1 to 10000, got `10001` (number)',
      '14:11: provision[3].name: expected a job name: 1 to 64 letters, digits, ".", "_" or "-", not starting with "." "_" or "-", got `".hidden"` (string)',
      '17:12: provision[3].until: expected "created" or "checked", got `"done"` (string)',
    ]);
  });

  it('names unknown keys with the allowed ones', () => {
    expect(issuesOf(HEAD + 'provision:\n  - name: a\n    productKey: a1B\n    count: 3\n    chunksize: 5\n')).toEqual([
      '7:5: provision[0].chunksize: unknown key, expected one of: name, productKey, account, devices, count, chunkSize, until, labels (did you mean "chunkSize"?)',
    ]);
  });
});
