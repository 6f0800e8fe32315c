/**
 * The compiled configuration: every duration is a number of milliseconds (`*Ms`), every default filled,
 * frozen. Produced by `compileConfig` (src/config/compile.ts) from the YAML file (DESIGN.md §2).
 */

export type SignatureVersion = 'v1' | 'v3';
export type CredentialsMode = 'env' | 'chain';
export type Until = 'created' | 'checked';

export interface PollingPolicy {
  /** @default 2000 */
  initialDelayMs: number;
  /** @default 60000 */
  maxDelayMs: number;
  /** @default 2 */
  multiplier: number;
  /** @default 900000 (15m) */
  stalledAfterMs: number;
  /** @default 86400000 (24h) */
  timeoutMs: number;
  /** @default 300000 (5m) */
  awaitingRegistrationDelayMs: number;
}

export interface AlibabaConfig {
  regionId: string;
  /** Resolved: the override, or https://iot.<regionId>.aliyuncs.com */
  endpoint: string;
  iotInstanceId: string | null;
  /** @default 'v3' */
  signatureVersion: SignatureVersion;
  /** @default 10000 */
  requestTimeoutMs: number;
  /** @default 'env' */
  credentials: CredentialsMode;
  /**
   * A failure streak of one API action this long logs one warn line (src/core/action-health.ts). Optional so that
   * hand-built configs (library users, tests) keep compiling; the compiler always sets it. @default 60000
   */
  failureWarnAfterMs?: number;
}

export interface RateLimitConfig {
  /** @default 5 */
  statusQps: number;
  /** @default 5 */
  pageQps: number;
  /** @default 8 */
  concurrency: number;
}

/** Where an account's AccessKey comes from: named environment variables (each also `<NAME>_FILE`), or the chain. */
export type AccountCredentials =
  | { mode: 'env'; accessKeyIdEnv: string; accessKeySecretEnv: string; securityTokenEnv: string | null }
  | { mode: 'chain' };

/** An account's budget, per action, in requests per second. */
export interface AccountRateLimit {
  statusQps: number;
  pageQps: number;
  /** Provisioning submits (BatchCheckDeviceNames, BatchRegisterDevice). @default 5 */
  submitQps: number;
  concurrency: number;
}

/**
 * One Alibaba Cloud account (DESIGN.md §11). Without an `accounts` section the compiled config holds exactly one,
 * `default`, built from `alibaba` and `rateLimit`.
 */
export interface AccountConfig {
  /** `[a-z0-9-]{1,40}`; `default` for the implicit account. */
  name: string;
  regionId: string;
  /** Resolved: the override, `alibaba.endpoint` for the same region, or https://iot.<regionId>.aliyuncs.com */
  endpoint: string;
  iotInstanceId: string | null;
  signatureVersion: SignatureVersion;
  requestTimeoutMs: number;
  credentials: AccountCredentials;
  /** The budget the process uses: the account's quota × (1 − reserve). */
  rateLimit: AccountRateLimit;
  /** The figures before `reserve` (as written, or inherited from `rateLimit`). */
  quota: Omit<AccountRateLimit, 'concurrency'>;
  /** Share of the quota left to other callers of the account, 0 ≤ reserve < 1. @default 0 */
  reserve: number;
  /** Where the entry is in the file, for messages; null for the implicit account and programmatic configs. */
  source: { file: string; line: number; col: number } | null;
}

export interface WebhookConfig {
  url: string;
  /** Name of the env variable holding the HMAC key. @default 'IBW_WEBHOOK_SECRET' */
  secretEnv: string;
  /** @default 5000 */
  timeoutMs: number;
}

export interface BatchConfig {
  /** The account (AccountConfig.name) the batch belongs to; `default` without an `accounts` section. */
  account: string;
  /** Always a string (a Long must survive beyond 2^53). */
  applyId: string;
  productKey: string;
  /** `batchKey(account, productKey, applyId)`: `${productKey}/${applyId}` for account `default`. */
  key: string;
  name: string | null;
  /** @default 'created' */
  until: Until;
  /** @default false */
  register: boolean;
  iotInstanceId: string | null;
  regionId: string;
  /** The endpoint for this batch's region. */
  endpoint: string;
  labels: Record<string, string>;
  polling: PollingPolicy;
  /** Hash of the batch's YAML entry as written: a change re-arms a parked batch. */
  entryHash: string;
  /** Where the entry is in the file, for messages. */
  source: { file: string; line: number; col: number } | null;
}

/** `http.auth`: a bearer token read from `tokenEnv` (or `<tokenEnv>_FILE`) at start. */
export interface HttpAuthConfig {
  /** Name of the environment variable holding the token (never the token itself). */
  tokenEnv: string;
  /** Also require the token on `/metrics`. */
  metrics: boolean;
}

/** `state.postgres.ssl`, compiled: `caFile` is absolute. Absent: the URL's sslmode (or PGSSLMODE) decides. */
export interface PostgresSslConfig {
  mode: 'disable' | 'require' | 'verify-full';
  caFile?: string;
}

/** One `provision` entry (DESIGN.md §13), compiled. */
export interface ProvisionJobConfig {
  name: string;
  productKey: string;
  /** The account to submit under, or null for the default one. */
  account: string | null;
  /** What the job submits: the names of a device file (absolute path), or a number of random names. */
  source: { kind: 'devices'; file: string } | { kind: 'count'; count: number };
  /** @default 1000 */
  chunkSize: number;
  /** @default 'created' */
  until: Until;
  labels: Record<string, string>;
  /** Where the entry is in the file, for messages; null for programmatic configs. */
  position: { file: string; line: number; col: number } | null;
}

export interface CompiledConfig {
  /** Absolute path of the file this came from, or null for programmatic configs. */
  file: string | null;
  /** `alibaba` as written: the one account's settings without `accounts`, else the defaults accounts inherit. */
  alibaba: AlibabaConfig;
  /** Every account, in file order; always at least one (`default` without an `accounts` section). */
  accounts: AccountConfig[];
  polling: PollingPolicy;
  rateLimit: RateLimitConfig;
  devices: { fetch: boolean; includeSecrets: boolean };
  state: {
    /** Where durable state lives (DESIGN.md §12). `compile` always sets it; absent (hand-built configs) means file. */
    backend?: 'file' | 'postgres';
    dir: string;
    /** Used when `backend` is postgres. `compile` always sets it. */
    postgres?: { urlEnv: string; schema: string; leaseMs: number; ssl?: PostgresSslConfig };
  };
  output: {
    resultsDir: string;
    eventsFile: string | null;
    webhook: WebhookConfig | null;
    /**
     * `account`: result files at `<resultsDir>/<account>/<productKey>/<applyId>.json` (the file has `accounts`);
     * `product` (or absent): `<resultsDir>/<productKey>/<applyId>.json`, as without accounts.
     */
    resultsLayout?: 'product' | 'account';
  };
  /** `listen` is `null` when "off"; `auth` is present only when `http.auth` is given. */
  http: { listen: { host: string; port: number } | null; auth?: HttpAuthConfig };
  housekeeping: { reloadConfig: string; summary: string; prune: string; retentionMs: number };
  batches: BatchConfig[];
  /** Provisioning jobs (DESIGN.md §13); absent means none (`compile` sets it only when there are jobs). */
  provision?: ProvisionJobConfig[];
}
