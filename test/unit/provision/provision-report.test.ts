/** The per-job report and factory CSV (DESIGN.md §13): built purely, written 0600, atomically, never through a link. */

import { lstat, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { writeProvisionOutputs } from '../../../src/provision/provision-output-writer.js';
import {
  type ChunkReport,
  type ProvisionJobView,
  buildProvisionReport,
  csvField,
  toFactoryCsv,
} from '../../../src/provision/provision-report.js';

const dev = (n: number) => ({ deviceName: `dev-000${n}`, iotId: `iot-${n}`, deviceSecret: `secret-${n}` });

function chunk(over: Partial<ChunkReport> & Pick<ChunkReport, 'index' | 'state'>): ChunkReport {
  return { kind: 'names', requested: 2, applyId: null, reason: null, rejected: [], devices: [], ...over };
}

function view(chunks: ChunkReport[], over: Partial<ProvisionJobView> = {}): ProvisionJobView {
  return {
    name: 'line-4',
    productKey: 'a1Prod',
    account: null,
    labels: { z: '1', a: '2' },
    until: 'created',
    chunkSize: 2,
    source: { kind: 'devices', file: '/fleet/line-4.csv' },
    chunks,
    rejected: [{ deviceName: 'bad', line: 3, code: 'invalid_name', reason: 'a DeviceName has 4 to 32 characters, this one has 3' }],
    ...over,
  };
}

describe('buildProvisionReport', () => {
  it('lists chunks, devices once each, and local and Alibaba rejections', () => {
    const report = buildProvisionReport(
      view([
        chunk({ index: 1, state: 'partial', applyId: '12', reason: 'CREATE_FAILED', devices: [dev(3)], rejected: [{ deviceName: 'dev-0004', reason: 'exists' }] }),
        chunk({ index: 0, state: 'created', applyId: '11', devices: [dev(1), dev(2)] }),
      ]),
    );
    expect(report).toMatchObject({
      job: 'line-4',
      settled: true,
      outcome: 'incomplete',
      source: { devices: '/fleet/line-4.csv' },
      summary: { chunks: { total: 2, settled: 2, byState: { created: 1, partial: 1 } }, devices: { requested: 4, created: 3, rejected: 2 } },
    });
    expect(Object.keys(report.labels)).toEqual(['a', 'z']);
    expect(report.chunks.map((c) => [c.index, c.applyId, c.state, c.created])).toEqual([
      [0, '11', 'created', 2],
      [1, '12', 'partial', 1],
    ]);
    expect(report.devices.map((d) => [d.deviceName, d.deviceSecret, d.chunk])).toEqual([
      ['dev-0001', 'secret-1', 0],
      ['dev-0002', 'secret-2', 0],
      ['dev-0003', 'secret-3', 1],
    ]);
    expect(report.rejected).toEqual([
      { deviceName: 'bad', line: 3, code: 'invalid_name', reason: 'a DeviceName has 4 to 32 characters, this one has 3', chunk: null },
      { deviceName: 'dev-0004', line: null, code: 'alibaba_refused', reason: 'exists', chunk: 1 },
    ]);
  });

  it('is running until every chunk settles; complete when all are created, or checked for until: checked', () => {
    expect(buildProvisionReport(view([chunk({ index: 0, state: 'created' }), chunk({ index: 1, state: 'watching' })])).outcome).toBe('running');
    expect(buildProvisionReport(view([chunk({ index: 0, state: 'created' })])).outcome).toBe('complete');
    expect(buildProvisionReport(view([chunk({ index: 0, state: 'checked' })], { until: 'checked' })).outcome).toBe('complete');
    expect(buildProvisionReport(view([chunk({ index: 0, state: 'checked' })])).outcome).toBe('incomplete');
    const unknown = buildProvisionReport(view([chunk({ index: 0, kind: 'count', state: 'submission_unknown' })], { source: { kind: 'count', count: 2 } }));
    expect([unknown.settled, unknown.outcome, unknown.source]).toEqual([true, 'incomplete', { count: 2 }]);
  });

  it('keeps a name reported by two chunks once, from the first chunk', () => {
    const report = buildProvisionReport(view([chunk({ index: 0, state: 'created', devices: [dev(1)] }), chunk({ index: 1, state: 'created', devices: [dev(1)] })]));
    expect(report.devices).toEqual([{ ...dev(1), chunk: 0 }]);
  });
});

describe('toFactoryCsv', () => {
  it('has the flashing tool columns, one CRLF row per device, quoted only where needed', () => {
    const report = buildProvisionReport(view([chunk({ index: 0, state: 'created', devices: [dev(1), dev(2)] })]));
    expect(toFactoryCsv(report)).toBe('ProductKey,DeviceName,DeviceSecret,IotId\r\na1Prod,dev-0001,secret-1,iot-1\r\na1Prod,dev-0002,secret-2,iot-2\r\n');
    expect(csvField('a,"b"')).toBe('"a,""b"""');
  });
});

describe('writeProvisionOutputs', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ibw-provision-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const report = () => buildProvisionReport(view([chunk({ index: 0, state: 'created', applyId: '11', devices: [dev(1)] })]));

  it('writes both files 0600 under <resultsDir>/<productKey>/, and the same state gives the same bytes', async () => {
    const paths = await writeProvisionOutputs(path.join(dir, 'results'), report());
    expect(paths).toEqual({
      json: path.join(dir, 'results', 'a1Prod', 'provision-line-4.json'),
      csv: path.join(dir, 'results', 'a1Prod', 'provision-line-4.csv'),
    });
    for (const file of [paths.json, paths.csv]) expect((await lstat(file)).mode & 0o777).toBe(0o600);
    const json = JSON.parse(await readFile(paths.json, 'utf8')) as { devices: unknown[] };
    expect(json.devices).toEqual([{ ...dev(1), chunk: 0 }]);
    expect(await readFile(paths.csv, 'utf8')).toContain('a1Prod,dev-0001,secret-1,iot-1\r\n');
    const before = await readFile(paths.json, 'utf8');
    await writeProvisionOutputs(path.join(dir, 'results'), report());
    expect(await readFile(paths.json, 'utf8')).toBe(before);
    expect((await readdir(path.join(dir, 'results', 'a1Prod'))).sort()).toEqual(['provision-line-4.csv', 'provision-line-4.json']);
  });

  it('replaces a symlink at the file name instead of writing through it', async () => {
    await mkdir(path.join(dir, 'results', 'a1Prod'), { recursive: true });
    const victim = path.join(dir, 'victim.txt');
    await writeFile(victim, 'keep');
    await symlink(victim, path.join(dir, 'results', 'a1Prod', 'provision-line-4.csv'));
    await writeProvisionOutputs(path.join(dir, 'results'), report());
    expect(await readFile(victim, 'utf8')).toBe('keep');
    expect((await lstat(path.join(dir, 'results', 'a1Prod', 'provision-line-4.csv'))).isSymbolicLink()).toBe(false);
  });

  it('refuses a product directory that is a symlink', async () => {
    await mkdir(path.join(dir, 'results'));
    await mkdir(path.join(dir, 'elsewhere'));
    await symlink(path.join(dir, 'elsewhere'), path.join(dir, 'results', 'a1Prod'));
    await expect(writeProvisionOutputs(path.join(dir, 'results'), report())).rejects.toMatchObject({ code: 'UnsafePath' });
    expect(await readdir(path.join(dir, 'elsewhere'))).toEqual([]);
  });

  it('refuses a job name that is not a safe file name', async () => {
    await expect(writeProvisionOutputs(dir, { ...report(), job: '../x' })).rejects.toMatchObject({ code: expect.stringMatching(/Unsafe/) });
  });
});
