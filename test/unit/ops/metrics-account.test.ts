/** The `account` label (DESIGN.md §11): present with `accounts` (the process's account), absent without. */
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
