import { describe, expect, it } from 'vitest';

import { runStatusWatch } from '../../../src/commands/status-watch.js';
import { toStatusRows } from '../../../src/core/status-row.js';
import { styles } from '../../../src/ops/color.js';
import { formatAge, parseMetrics, renderFrame, renderSummaryLine, type WatchSample } from '../../../src/ops/watch-view.js';
import { testConfig } from '../../helpers/config.js';
import { memoryIo } from '../../helpers/memory-io.js';
import { makeBatch } from '../ledger/helpers.js';

const T0 = 1_700_000_100_000;
const budgets = [
  { label: 'status', action: 'QueryBatchRegisterDeviceStatus', qps: 5 },
  { label: 'pages', action: 'QueryPageByApplyId', qps: 2 },
];

function sample(at: number, polls: number, requests: number | null): WatchSample {
  const rows = toStatusRows([
    makeBatch(1, { polls, name: 'a\u001b[2Jb', firstSeenAt: T0 - 3_700_000 }),
    makeBatch(2, { polls: 1, lastError: { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:1', at: T0 } }),
    makeBatch(3, { state: 'settled', outcome: 'created', deviceCount: 250, settledAt: T0 }),
    makeBatch(4, { state: 'parked', outcome: 'rejected', lastError: { code: 'iot.prod.NotExistedProduct', message: 'iot.prod.NotExistedProduct: no such product', at: T0 } }),
  ]);
  const metrics =
    requests === null
      ? null
      : parseMetrics(
          [
            '# HELP ibw_api_requests_total API attempts by action and outcome.',
            `ibw_api_requests_total{action="QueryBatchRegisterDeviceStatus",outcome="success"} ${requests}`,
            'ibw_api_requests_total{action="QueryBatchRegisterDeviceStatus",outcome="throttled"} 2',
            'ibw_rate_limit_qps{action="QueryBatchRegisterDeviceStatus"} 2.5',
            'ibw_throttled_total{action="QueryBatchRegisterDeviceStatus"} 2',
            '',
          ].join('\n'),
        );
  return { at, rows, metrics, metricsNote: metrics ? 'http://127.0.0.1:9464/metrics' : 'none', ledgerError: null };
}

describe('watch view', () => {
  it('rates come from metric deltas and, without metrics, from the ledger poll counters', () => {
    const line = renderSummaryLine(sample(T0 + 2000, 13, 28), sample(T0, 3, 20), { budgets });
    expect(line).toBe(
      '2023-11-14T22:15:02.000Z batches=4 pending=2 fetching=0 settled=1 parked=1 failing=2 devices=250 status_qps=4.0/5 pages_qps=-/2 ledger_polls_per_s=5.0',
    );
    const first = renderSummaryLine(sample(T0, 3, null), null, { budgets });
    expect(first).toContain('status_qps=-/5');
    expect(first).not.toContain('ledger_polls');
  });

  it('a frame fits 100 columns, shows the adaptive rate and throttling, the oldest pending and the failing', () => {
    const lines = renderFrame(sample(T0 + 2000, 13, 28), sample(T0, 3, 20), {
      stateDir: '/var/lib/ibw',
      intervalMs: 2000,
      budgets,
      filters: '',
      wide: false,
      columns: 180,
      styles: styles(false),
    });
    const screen = lines.join('\n');
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(100);
    expect(screen).toContain('Batches 4   pending 2   fetching 0   settled 1   parked 1   failing 2');
    expect(screen).toContain('Budget  status 4.0/s of 5 (adaptive 2.5, throttled 2)   pages -/s of 2   ledger polls 5.0/s');
    expect(screen).toMatch(/1000001 +a1TestProduct +a\\x1b\[2Jb +CHECK +1h01m/);
    expect(screen).toMatch(/Failing \(2\)\n {2}1000002 {2}a1TestProduct {2}retrying {2}connect ECONNREFUSED 127\.0\.0\.1:1$/m);
    expect(screen).toMatch(/1000004 {2}a1TestProduct {2}parked {2}iot\.prod\.NotExistedProduct: no such product$/m);
    expect(screen).toContain('jobs: none');
  });

  it('groups by account and job once rows carry them', () => {
    const rows = sample(T0, 1, null).rows.map((r, i) => ({ ...r, account: i < 2 ? 'prod-cn' : 'prod-eu', job: i === 3 ? 'fleet-7' : null }));
    const lines = renderFrame({ ...sample(T0, 1, null), rows }, null, {
      stateDir: '/s', intervalMs: 500, budgets, filters: 'account=prod-cn', wide: false, styles: styles(false),
    });
    const screen = lines.join('\n');
    expect(screen).toContain('every 500ms  account=prod-cn');
    expect(screen).toMatch(/prod-cn +2 +2 +0 +0 +1 +0/);
    expect(screen).toMatch(/prod-eu +2 +0 +1 +1 +1 +250/);
    expect(screen).toMatch(/job +batches[^\n]*\nfleet-7 +1 +0 +0 +1 +1 +0/);
  });

  it('ages read like people write them', () => {
    expect([formatAge(12_000), formatAge(245_000), formatAge(3 * 3_600_000 + 720_000), formatAge(50 * 3_600_000)]).toEqual(['12s', '4m05s', '3h12m', '2d02h']);
  });

  it('without a terminal, one line per interval until SIGINT, then exit 0 (clock injected)', async () => {
    const m = memoryIo([], {});
    let now = T0;
    let sleeps = 0;
    const clock = {
      now: () => now,
      sleep: async () => {
        sleeps += 1;
        now += 2000;
        if (sleeps === 3) m.signal('SIGINT');
      },
    };
    const config = testConfig({ state: { dir: '/nonexistent/ibw-watch' }, http: { listen: { host: '0.0.0.0', port: 9 } } });
    const urls: string[] = [];
    const code = await runStatusWatch(
      { config, filter: { states: null, accounts: null, jobs: null }, intervalMs: 2000, wide: false },
      m.io,
      { clock, fetchMetrics: async (url) => (urls.push(url), 'ibw_api_requests_total{action="QueryBatchRegisterDeviceStatus",outcome="success"} 0\n') },
    );
    expect(code).toBe(0);
    const lines = m.stdout.text.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^2023-11-14T22:15:00.000Z batches=0 /);
    expect(lines[2]).toMatch(/^2023-11-14T22:15:04.000Z batches=0 .*status_qps=0.0\/5/);
    expect(urls[0]).toBe('http://127.0.0.1:9/metrics');
  });
});
