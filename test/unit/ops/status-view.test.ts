import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { filterRows } from '../../../src/commands/status-rows.js';
import { errorText, toStatusRows } from '../../../src/core/status-row.js';
import { openFileLedger } from '../../../src/ledger/file-ledger.js';
import { main } from '../../../src/main.js';
import { createLogger } from '../../../src/ops/logger.js';
import { formatStatusView, STATUS_COLUMNS, type ViewRow } from '../../../src/ops/status-view.js';
import { escapeControl } from '../../../src/ops/terminal-text.js';
import { CaptureStream, memoryIo } from '../../helpers/memory-io.js';
import { makeBatch } from '../ledger/helpers.js';

// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const EVIL = 'evil\u001b[2J\u202ename\u0007\r\n';

function rows(): ViewRow[] {
  return toStatusRows([
    makeBatch(1, { name: EVIL, labels: { 'te\u001bam': 'a\u202eb' } }),
    makeBatch(2, {
      state: 'parked',
      outcome: 'rejected',
      status: 'CREATE',
      name: 'a-rather-long-batch-name-that-does-not-fit-anywhere',
      lastError: { code: 'iot.device.InvalidFormattedApplyId', message: 'QueryDeviceBatch: iot.device.InvalidFormattedApplyId (HTTP 200): the ApplyId is not valid for this product and nothing will make it so', at: 1 },
    }),
    makeBatch(3, { state: 'settled', outcome: 'created', status: 'CREATE_SUCCESS', settledAt: 1_700_000_100_000, deviceCount: 1000 }),
  ]);
}

describe('escapeControl', () => {
  it('shows C0/C1 controls, DEL and bidi/zero-width characters as escapes and leaves other text alone', () => {
    expect(escapeControl('\u001b[2J')).toBe('\\x1b[2J');
    expect(escapeControl('a\u202eb')).toBe('a\\u202eb');
    expect(escapeControl('x\ny\tz\r')).toBe('x\\ny\\tz\\r');
    expect(escapeControl('\u0000\u007f\u009b\u200b\u2066\ufeff')).toBe('\\x00\\x7f\\x9b\\u200b\\u2066\\ufeff');
    expect(escapeControl('région ✓ 设备')).toBe('région ✓ 设备');
  });
});

describe('the status table', () => {
  it('narrow by default: fits 100 columns, keeps the §7 order of the first columns, escapes user text', () => {
    const text = formatStatusView(rows());
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^applyId\s+productKey\s+name\s+status\s+outcome\s+polls\s+lastError$/);
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(100);
    expect(text).not.toMatch(RAW_CONTROL);
    expect(text).toContain('evil\\x1b[2J\\u20');
    expect(lines[2]).toContain('a-rather-long-b…');
    // The error says its code once, and is cut to what fits.
    expect(lines[2]).toMatch(/ {2}QueryDeviceBatch: iot\.de\S*…$/);
  });

  it('--wide shows every column, untruncated up to its cap, and the labels', () => {
    const text = formatStatusView(rows(), { wide: true });
    const header = text.split('\n')[0]!;
    expect(header.split(/\s+/)).toEqual(STATUS_COLUMNS.map((c) => c.header));
    expect(text).toContain('te\\x1bam=a\\u202eb');
    expect(text).toContain('2023-11-14T22:15:00.000Z'); // settledAt of batch 3
    expect(text).toContain('the ApplyId is not valid for this product');
    expect(text).not.toContain('iot.device.InvalidFormattedApplyId: QueryDeviceBatch');
    expect(text).not.toMatch(RAW_CONTROL);
  });

  it('an error message that already names its code is not prefixed with it again', () => {
    expect(errorText('X.Y', 'Act: X.Y (HTTP 400): bad')).toBe('Act: X.Y (HTTP 400): bad');
    expect(errorText('ENOTFOUND', 'getaddrinfo failed')).toBe('ENOTFOUND: getaddrinfo failed');
  });

  it('filters by state, account (default until accounts exist) and job', () => {
    const all = rows();
    const f = (states: string[] | null, accounts: string[] | null, jobs: string[] | null) =>
      filterRows(all, { states: states && new Set(states), accounts: accounts && new Set(accounts), jobs: jobs && new Set(jobs) }).map((r) => r.applyId);
    expect(f(['parked'], null, null)).toEqual(['1000002']);
    expect(f(['pending', 'settled'], null, null)).toEqual(['1000001', '1000003']);
    expect(f(null, ['default'], null)).toHaveLength(3);
    expect(f(null, ['prod-eu'], null)).toEqual([]);
    expect(f(null, null, [''])).toHaveLength(3);
    expect(f(null, null, ['fleet-2026'])).toEqual([]);
    const withAccount = all.map((r, i) => ({ ...r, account: i === 0 ? 'prod-eu' : null, job: i === 2 ? 'fleet-2026' : null }));
    expect(filterRows(withAccount, { states: null, accounts: new Set(['prod-eu']), jobs: null }).map((r) => r.applyId)).toEqual(['1000001']);
    expect(filterRows(withAccount, { states: null, accounts: null, jobs: new Set(['fleet-2026']) }).map((r) => r.applyId)).toEqual(['1000003']);
  });
});

describe('status on a ledger (in-process)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-status-'));
    const ledger = await openFileLedger({ dir: join(dir, 'state'), fsync: false });
    const [r1, r2, r3] = rows().map((r) => r.applyId);
    await ledger.append([
      { t: 'batch', rec: makeBatch(1, { name: EVIL }) },
      { t: 'batch', rec: makeBatch(2, { state: 'parked', outcome: 'rejected' }) },
      { t: 'batch', rec: makeBatch(3, { state: 'settled', outcome: 'created', settledAt: 1_700_000_100_000 }) },
    ]);
    expect([r1, r2, r3]).toHaveLength(3);
    await ledger.close();
    await writeFile(
      join(dir, 'w.yaml'),
      `alibaba: { regionId: cn-shanghai }\nstate: { dir: ${join(dir, 'state')} }\noutput: { resultsDir: ${join(dir, 'results')} }\nbatches: []\n`,
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints the escaped narrow table, filters, and keeps the §7 JSON shape', async () => {
    const table = memoryIo(['status', '--config', join(dir, 'w.yaml')]);
    expect(await main(table.io)).toBe(0);
    expect(table.stdout.text).not.toMatch(RAW_CONTROL);
    expect(table.stdout.text).toContain('evil\\x1b[2J');
    expect(table.stdout.text.trimEnd().split('\n')).toHaveLength(4);

    const parked = memoryIo(['status', '--config', join(dir, 'w.yaml'), '--state', 'parked', '--json']);
    expect(await main(parked.io)).toBe(0);
    const json = JSON.parse(parked.stdout.text) as Record<string, unknown>[];
    expect(json.map((r) => r.applyId)).toEqual(['1000002']);
    expect(Object.keys(json[0]!)).toEqual([
      'applyId', 'productKey', 'name', 'state', 'status', 'outcome', 'polls', 'firstSeenAt', 'settledAt', 'nextPollAt',
      'lastError', 'labels', 'resultFile', 'deviceCount',
    ]);

    const all = memoryIo(['status', '--config', join(dir, 'w.yaml'), '--json']);
    expect(await main(all.io)).toBe(0);
    // JSON is data, not terminal text: the name stays exactly as it is (JSON escapes the C0 characters itself).
    expect((JSON.parse(all.stdout.text) as { name: string }[])[0]!.name).toBe(EVIL);
  });
});

describe('pretty logs', () => {
  it('escape control characters in the message, the fields and the bindings', () => {
    const out = new CaptureStream();
    const logger = createLogger({ format: 'pretty', destination: out }).child({ name: 'child\u001b]0;title\u0007' });
    logger.info({ batch: { name: EVIL }, list: ['\u202e'] }, `batch.added a1/1 ${EVIL}`);
    expect(out.text).not.toMatch(RAW_CONTROL);
    expect(out.text).toContain('batch.added a1/1 evil\\x1b[2J\\u202ename');
    expect(out.text).toContain('child\\x1b]0;title\\x07');
    expect(out.text).toContain('\\u202e');
  });
});

describe('pretty logs say a config problem once', () => {
  it('the issue object is not printed again under its message line (JSON keeps it)', () => {
    const out = new CaptureStream();
    const issue = { file: '/etc/w.yaml', line: 3, col: 5, path: 'batches[0].applyId', message: 'expected a string' };
    createLogger({ format: 'pretty', destination: out }).warn({ issue }, `config reload rejected: /etc/w.yaml:3:5: batches[0].applyId: expected a string`);
    const lines = out.text.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/WARN.*config reload rejected: \/etc\/w\.yaml:3:5: batches\[0\]\.applyId: expected a string$/);
    const json = new CaptureStream();
    createLogger({ format: 'json', destination: json }).warn({ issue }, 'config reload rejected');
    expect(JSON.parse(json.text)).toMatchObject({ issue });
  });
});

describe('the account column of the narrow table', () => {
  it('appears once the rows span several accounts (the same ApplyId may be in two), and stays within the width', () => {
    const base = rows();
    const one = base.map((r) => ({ ...r, account: 'fleet-a' }));
    expect(formatStatusView(one).split('\n')[0]).not.toContain('account');
    const two = [...one, { ...one[0]!, account: 'fleet-b' }];
    const text = formatStatusView(two);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toMatch(/\baccount\b/);
    expect(lines.filter((l) => l.includes('fleet-a'))).toHaveLength(3);
    expect(lines.filter((l) => l.includes('fleet-b'))).toHaveLength(1);
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(100);
  });
});
