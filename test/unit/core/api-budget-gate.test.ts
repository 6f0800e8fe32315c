/** The ApiBudget's gate is asked again when a queued waiter is granted (DESIGN.md §12: no call on an unconfirmed lease). */
import { describe, expect, it } from 'vitest';

import { ApiBudget } from '../../../src/core/api-budget.js';
import { createManualClock } from '../../../src/core/clock.js';
import { DaemonError } from '../../../src/errors.js';

describe('ApiBudget gate at grant time', () => {
  it('a waiter queued while confirmed is refused when the lease stopped being trusted before its token came', async () => {
    const clock = createManualClock(1000);
    let owned = true;
    const refusal = new DaemonError('lease not confirmed', { kind: 'store', scope: 'attempt', code: 'LeaseUnconfirmed' });
    const budget = new ApiBudget({ rates: { statusQps: 1, pageQps: 1 }, clock, tuning: (qps) => ({ ratePerSec: qps }), gate: () => (owned ? null : refusal) });
    await budget.acquire('QueryBatchRegisterDeviceStatus'); // the free token
    const queued = budget.acquire('QueryBatchRegisterDeviceStatus'); // waits about a second for the next
    const settled = queued.then(
      () => 'granted',
      (err: unknown) => err,
    );
    owned = false; // say the process was paused past its trust window meanwhile
    await clock.advance(2000);
    expect(await settled).toBe(refusal);
    owned = true;
    await clock.advance(2000);
    await expect(budget.acquire('QueryBatchRegisterDeviceStatus')).resolves.toBeUndefined();
  });
});
