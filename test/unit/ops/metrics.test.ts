import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';

import { OUTCOMES } from '../../../src/events.js';
import { createMetrics, METRIC_NAMES } from '../../../src/ops/metrics.js';

/** The value of one sample line, e.g. `ibw_batches{state="pending"} 3`. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    if (line.slice(0, space) === series) return Number(line.slice(space + 1));
  }
  return undefined;
}

describe('createMetrics', () => {
  it('declares every contract metric with its type and label set', async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.recordApiAttempt({ action: 'QueryBatchRegisterDeviceStatus', outcome: 'ok', durationMs: 120 });
    metrics.setRateLimit('QueryBatchRegisterDeviceStatus', 5);
    metrics.recordSinkDelivery('webhook', 'ok');
    const text = await metrics.render();

    const types: Record<string, string> = {
      ibw_api_requests_total: 'counter',
      ibw_api_request_duration_seconds: 'histogram',
      ibw_batches: 'gauge',
      ibw_throttled_total: 'counter',
      ibw_rate_limit_qps: 'gauge',
      ibw_sink_deliveries_total: 'counter',
      ibw_batch_settle_seconds: 'histogram',
      ibw_config_reloads_total: 'counter',
      ibw_provision_devices: 'gauge',
      ibw_account_owned: 'gauge',
      ibw_lease_changes_total: 'counter',
    };
    expect(Object.values(METRIC_NAMES).sort()).toEqual(Object.keys(types).sort());
    for (const [name, type] of Object.entries(types)) {
      expect(text).toContain(`# TYPE ${name} ${type}\n`);
    }
    expect(sample(text, 'ibw_api_requests_total{action="QueryBatchRegisterDeviceStatus",outcome="ok"}')).toBe(1);
    expect(sample(text, 'ibw_api_request_duration_seconds_count{action="QueryBatchRegisterDeviceStatus"}')).toBe(1);
    expect(sample(text, 'ibw_api_request_duration_seconds_sum{action="QueryBatchRegisterDeviceStatus"}')).toBeCloseTo(0.12);
    expect(sample(text, 'ibw_api_request_duration_seconds_bucket{le="0.25",action="QueryBatchRegisterDeviceStatus"}')).toBe(1);
    expect(sample(text, 'ibw_api_request_duration_seconds_bucket{le="0.1",action="QueryBatchRegisterDeviceStatus"}')).toBe(0);
    expect(sample(text, 'ibw_rate_limit_qps{action="QueryBatchRegisterDeviceStatus"}')).toBe(5);
    expect(sample(text, 'ibw_sink_deliveries_total{sink="webhook",outcome="ok"}')).toBe(1);
  });

  it('initialises the known label combinations at 0', async () => {
    const text = await createMetrics({ collectDefault: false }).render();
    for (const outcome of ['ok', 'invalid', 'error']) {
      expect(sample(text, `ibw_config_reloads_total{outcome="${outcome}"}`)).toBe(0);
    }
    for (const state of ['pending', 'fetching', 'settled', 'parked']) {
      expect(sample(text, `ibw_batches{state="${state}"}`)).toBe(0);
    }
    for (const outcome of OUTCOMES) {
      expect(sample(text, `ibw_batch_settle_seconds_count{outcome="${outcome}"}`)).toBe(0);
    }
    expect(sample(text, 'ibw_throttled_total{action="QueryBatchRegisterDeviceStatus"}')).toBe(0);
    // Every sink × delivery outcome: the first dead letter must be an increase() from 0, not a new series at 1.
    for (const sink of ['log', 'emitter', 'events_file', 'webhook']) {
      for (const outcome of ['ok', 'retry', 'dead_letter', 'error']) {
        expect(sample(text, `ibw_sink_deliveries_total{sink="${sink}",outcome="${outcome}"}`), `${sink} ${outcome}`).toBe(0);
      }
    }
  });

  it('counts reloads, throttles and settle times', async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.recordConfigReload('ok');
    metrics.recordConfigReload('ok');
    metrics.recordConfigReload('invalid');
    metrics.recordThrottle('QueryPageByApplyId');
    metrics.recordSettled('created', 250);
    metrics.recordSettled('created', Number.NaN); // ignored, never poisons the sum
    const text = await metrics.render();
    expect(sample(text, 'ibw_config_reloads_total{outcome="ok"}')).toBe(2);
    expect(sample(text, 'ibw_config_reloads_total{outcome="invalid"}')).toBe(1);
    expect(sample(text, 'ibw_config_reloads_total{outcome="error"}')).toBe(0);
    expect(sample(text, 'ibw_throttled_total{action="QueryPageByApplyId"}')).toBe(1);
    expect(sample(text, 'ibw_batch_settle_seconds_count{outcome="created"}')).toBe(1);
    expect(sample(text, 'ibw_batch_settle_seconds_sum{outcome="created"}')).toBe(250);
    expect(sample(text, 'ibw_batch_settle_seconds_bucket{le="300",outcome="created"}')).toBe(1);
    expect(sample(text, 'ibw_batch_settle_seconds_bucket{le="120",outcome="created"}')).toBe(0);
    expect(text).toContain('ibw_batch_settle_seconds_bucket{le="86400",outcome="created"} 1');
  });

  it('sets batch counts and drops states that disappear to 0', async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.setBatchCounts({ pending: 3, settled: 2, custom: 1 });
    let text = await metrics.render();
    expect(sample(text, 'ibw_batches{state="pending"}')).toBe(3);
    expect(sample(text, 'ibw_batches{state="settled"}')).toBe(2);
    expect(sample(text, 'ibw_batches{state="custom"}')).toBe(1);
    metrics.setBatchCounts({ settled: 5 });
    text = await metrics.render();
    expect(sample(text, 'ibw_batches{state="pending"}')).toBe(0);
    expect(sample(text, 'ibw_batches{state="custom"}')).toBe(0);
    expect(sample(text, 'ibw_batches{state="settled"}')).toBe(5);
  });

  it('collects default process metrics with the ibw_ prefix by default', async () => {
    const metrics = createMetrics();
    const text = await metrics.render();
    expect(text).toContain('# TYPE ibw_process_cpu_user_seconds_total counter');
    expect(text).toContain('ibw_nodejs_heap_size_used_bytes');
    expect(text).not.toMatch(/^process_cpu/m);
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it('uses a private registry, so two instances do not collide', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.recordThrottle('QueryBatchRegisterDeviceStatus');
    expect(a.registry).not.toBe(b.registry);
    expect(sample(await b.render(), 'ibw_throttled_total{action="QueryBatchRegisterDeviceStatus"}')).toBe(0);
  });

  it('registers into a registry that is passed in', async () => {
    const registry = new Registry();
    const metrics = createMetrics({ registry, collectDefault: false });
    metrics.recordConfigReload('error');
    expect(metrics.registry).toBe(registry);
    expect(sample(await registry.metrics(), 'ibw_config_reloads_total{outcome="error"}')).toBe(1);
  });
});
