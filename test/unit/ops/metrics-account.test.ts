/** The `account` label (DESIGN.md §11): with `accounts` each per-account series carries its account; without, no label. */
import { describe, expect, it } from 'vitest';

import { createMetrics } from '../../../src/ops/metrics.js';

describe('metrics: the account label', () => {
  it('labels every series with the account when one is given', async () => {
    const metrics = createMetrics({ collectDefault: false, account: 'fleet-a' });
    metrics.recordApiAttempt({ action: 'QueryBatchRegisterDeviceStatus', outcome: 'ok', durationMs: 10 });
    metrics.recordThrottle('QueryBatchRegisterDeviceStatus');
    metrics.setRateLimit('QueryBatchRegisterDeviceStatus', 24);
    metrics.setBatchCounts({ pending: 3 });
    metrics.recordSettled('created', 12);
    const text = await metrics.render();
    expect(text).toContain('ibw_api_requests_total{action="QueryBatchRegisterDeviceStatus",outcome="ok",account="fleet-a"} 1');
    expect(text).toContain('ibw_throttled_total{action="QueryBatchRegisterDeviceStatus",account="fleet-a"} 1');
    expect(text).toContain('ibw_rate_limit_qps{action="QueryBatchRegisterDeviceStatus",account="fleet-a"} 24');
    expect(text).toContain('ibw_batches{state="pending",account="fleet-a"} 3');
    expect(text).toContain('ibw_batch_settle_seconds_count{account="fleet-a",outcome="created"} 1');
  });

  it('has no account label without one (a file without accounts)', async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.setBatchCounts({ pending: 3 });
    expect(await metrics.render()).not.toContain('account=');
  });
});

describe('metrics: several accounts in one registry', () => {
  it('labels each recorder call with its account, starts every account at zero, and drops a removed one', async () => {
    const metrics = createMetrics({ collectDefault: false, accounts: ['fleet-a', 'fleet-b'] });
    expect(metrics.labelled).toBe(true);
    metrics.recordThrottle('QueryBatchRegisterDeviceStatus', 'fleet-b');
    metrics.setRateLimit('QueryBatchRegisterDeviceStatus', 2.5, 'fleet-b');
    metrics.setRateLimit('QueryBatchRegisterDeviceStatus', 10, 'fleet-a');
    metrics.setBatchCounts({ pending: 2 }, 'fleet-a');
    metrics.recordSinkDelivery('webhook', 'ok', 'fleet-a');
    metrics.recordConfigReload('ok');
    let text = await metrics.render();
    expect(text).toContain('ibw_throttled_total{action="QueryBatchRegisterDeviceStatus",account="fleet-a"} 0');
    expect(text).toContain('ibw_throttled_total{action="QueryBatchRegisterDeviceStatus",account="fleet-b"} 1');
    expect(text).toContain('ibw_rate_limit_qps{action="QueryBatchRegisterDeviceStatus",account="fleet-b"} 2.5');
    expect(text).toContain('ibw_batches{state="pending",account="fleet-a"} 2');
    expect(text).toContain('ibw_batches{state="pending",account="fleet-b"} 0');
    expect(text).toContain('ibw_sink_deliveries_total{sink="webhook",outcome="ok",account="fleet-a"} 1');
    expect(text).toContain('ibw_sink_deliveries_total{sink="webhook",outcome="dead_letter",account="fleet-b"} 0');
    // Process-wide: no account label.
    expect(text).toContain('ibw_config_reloads_total{outcome="ok"} 1');

    metrics.addAccount('fleet-c');
    metrics.removeAccount('fleet-b');
    text = await metrics.render();
    expect(text).toContain('ibw_batches{state="parked",account="fleet-c"} 0');
    expect(text).not.toMatch(/ibw_batches\{[^}]*account="fleet-b"/);
    expect(text).not.toMatch(/ibw_rate_limit_qps\{[^}]*account="fleet-b"/);
    // Counters of a removed account stay, as counters do.
    expect(text).toContain('ibw_throttled_total{action="QueryBatchRegisterDeviceStatus",account="fleet-b"} 1');
  });
});
