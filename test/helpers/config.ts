import { compileConfigObject } from '../../src/config/compile.js';
import type { AccountConfig, BatchConfig, CompiledConfig, PollingPolicy } from '../../src/config/types.js';

export const testPolling: PollingPolicy = {
  initialDelayMs: 1000,
  maxDelayMs: 8000,
  multiplier: 2,
  stalledAfterMs: 60_000,
  timeoutMs: 600_000,
  awaitingRegistrationDelayMs: 30_000,
};

export function testBatch(over: Partial<BatchConfig> = {}): BatchConfig {
  const applyId = over.applyId ?? '1295006';
  const productKey = over.productKey ?? 'a1SimProduct1';
  return {
    account: 'default',
    applyId,
    productKey,
    key: `${productKey}/${applyId}`,
    name: null,
    until: 'created',
    register: false,
    iotInstanceId: null,
    regionId: 'cn-shanghai',
    endpoint: 'http://127.0.0.1:1',
    labels: {},
    polling: testPolling,
    entryHash: 'h1',
    source: null,
    ...over,
  };
}

/** The implicit account `default` of {@link testConfig} (what a file without `accounts` compiles to). */
export function testAccount(over: Partial<AccountConfig> = {}): AccountConfig {
  return {
    name: 'default',
    regionId: 'cn-shanghai',
    endpoint: 'http://127.0.0.1:1',
    iotInstanceId: null,
    signatureVersion: 'v3',
    requestTimeoutMs: 2000,
    credentials: {
      mode: 'env',
      accessKeyIdEnv: 'ALIBABA_CLOUD_ACCESS_KEY_ID',
      accessKeySecretEnv: 'ALIBABA_CLOUD_ACCESS_KEY_SECRET',
      securityTokenEnv: 'ALIBABA_CLOUD_SECURITY_TOKEN',
    },
    rateLimit: { statusQps: 5, pageQps: 5, submitQps: 5, concurrency: 4 },
    quota: { statusQps: 5, pageQps: 5, submitQps: 5 },
    reserve: 0,
    source: null,
    ...over,
  };
}

export function testConfig(over: Partial<CompiledConfig> & { batches?: BatchConfig[] } = {}): CompiledConfig {
  return {
    file: null,
    alibaba: {
      regionId: 'cn-shanghai',
      endpoint: 'http://127.0.0.1:1',
      iotInstanceId: null,
      signatureVersion: 'v3',
      requestTimeoutMs: 2000,
      credentials: 'env',
    },
    accounts: [testAccount()],
    polling: testPolling,
    rateLimit: { statusQps: 5, pageQps: 5, concurrency: 4 },
    devices: { fetch: true, includeSecrets: true },
    state: { dir: '/nonexistent' },
    output: { resultsDir: '/nonexistent', eventsFile: null, webhook: null },
    http: { listen: null },
    housekeeping: { reloadConfig: '*/1 * * * *', summary: '*/15 * * * *', prune: '0 3 * * *', retentionMs: 30 * 86_400_000 },
    batches: [],
    ...over,
  };
}

/** The product's default polling policy (DESIGN.md §2), compiled by the real config code, for benchmarks. */
export const defaultPolling: PollingPolicy = compileConfigObject({ alibaba: { regionId: 'cn-shanghai' } }).polling;
