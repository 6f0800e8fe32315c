/** `ibw_account_owned{account}` and `ibw_lease_changes_total{reason}` (DESIGN.md §12). */
import { describe, expect, it } from 'vitest';

import { LEASE_CHANGE_REASONS } from '../../../src/ledger/postgres-lease.js';
import { createMetrics } from '../../../src/ops/metrics.js';

describe('metrics: account ownership', () => {
  it('starts every reason at 0 and has no owned series before a change', async () => {
    const text = await createMetrics({ collectDefault: false }).render();
    for (const reason of LEASE_CHANGE_REASONS) expect(text).toContain(`ibw_lease_changes_total{reason="${reason}"} 0\n`);
    expect(text).not.toMatch(/^ibw_account_owned\{/m);
  });

  it('follows the changes per account and counts them per reason', async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.recordLeaseChange({ account: 'a', reason: 'acquired', owned: true });
    metrics.recordLeaseChange({ account: 'b', reason: 'acquired', owned: true });
    metrics.recordLeaseChange({ account: 'a', reason: 'renew_failed', owned: false });
    metrics.recordLeaseChange({ account: 'a', reason: 'renew_recovered', owned: true });
    metrics.recordLeaseChange({ account: 'b', reason: 'lost', owned: false });
    const text = await metrics.render();
    expect(text).toContain('ibw_account_owned{account="a"} 1\n');
    expect(text).toContain('ibw_account_owned{account="b"} 0\n');
    expect(text).toContain('ibw_lease_changes_total{reason="acquired"} 2\n');
    expect(text).toContain('ibw_lease_changes_total{reason="renew_failed"} 1\n');
    expect(text).toContain('ibw_lease_changes_total{reason="renew_recovered"} 1\n');
    expect(text).toContain('ibw_lease_changes_total{reason="lost"} 1\n');
    expect(text).toContain('ibw_lease_changes_total{reason="released"} 0\n');
  });

  it('the gauge carries its own account with account labels too, and goes when the account is removed', async () => {
    const metrics = createMetrics({ collectDefault: false, account: 'fleet-a' });
    metrics.recordLeaseChange({ account: 'fleet-b', reason: 'acquired', owned: true });
    expect(await metrics.render()).toContain('ibw_account_owned{account="fleet-b"} 1\n');
    metrics.removeAccount('fleet-b');
    expect(await metrics.render()).not.toContain('ibw_account_owned{account="fleet-b"}');
  });
});
