/**
 * The configuration schema (DESIGN.md §2), in zod 4. It is the single source of truth for:
 * - validation of the YAML file and of programmatic configs (`load.ts`, `compile.ts`);
 * - the JSON Schema editors use (`json-schema.ts` → `config/watcher.schema.json`);
 * - the list of documented keys (`listSchemaKeys`, checked against docs/configuration.md by a test).
 *
 * Every object is strict (unknown keys are errors). Every leaf carries its own message of the shape
 * ``expected <what>, got <found>`` so issues read well without further mapping. Defaults are written in
 * their user-facing form (`"2s"`); `compile.ts` turns them into `*Ms` numbers.
 *
 * Rules that involve two keys (initialDelay ≤ maxDelay, register vs until, duplicate batches) are not here:
 * zod skips refinements of objects whose children failed, and we want every issue at once, so they live in
 * `cross-checks.ts`, which runs on the raw input next to this schema.
 */

import { validateDetailed } from 'node-cron';
import { z } from 'zod';

import { expectedGot, quote } from './describe.js';
import { DURATION_EXPECTED, DURATION_PATTERN, tryParseDuration } from './duration.js';
import { isLoopbackHost } from '../loopback.js';
import { checkUrl } from '../url-rule.js';

/** Alibaba's per-account limit for QueryBatchRegisterDeviceStatus, in requests per second. */
export const STATUS_QPS_LIMIT = 30;
/** Alibaba's per-account limit for QueryPageByApplyId, in requests per second. */
export const PAGE_QPS_LIMIT = 50;
/** Alibaba's per-account limit for BatchCheckDeviceNames and BatchRegisterDevice, in requests per second (§13). */
export const SUBMIT_QPS_LIMIT = 10;
/** The account every batch belongs to when the file has no `accounts` section (DESIGN.md §11). */
export { DEFAULT_ACCOUNT } from '../core/record.js';
/** What an account name may be. */
export const ACCOUNT_NAME_PATTERN = /^[a-z0-9-]{1,40}$/;
/** Largest `rateLimit.concurrency`. */
export const MAX_CONCURRENCY = 256;
/** Longest `name`, label name and label value, in characters (a bound, so a runaway generator cannot feed 50 MB names). */
export const MAX_TEXT_LENGTH = 256;
/** Largest ApplyId: a Java Long. */
export const MAX_APPLY_ID = 9_223_372_036_854_775_807n;

/** Defaults of DESIGN.md §2, in the form a user would write them. */
export const RAW_DEFAULTS = {
  alibaba: { signatureVersion: 'v3', requestTimeout: '10s', credentials: 'env', failureWarnAfter: '60s' },
  polling: {
    initialDelay: '2s',
    maxDelay: '60s',
    multiplier: 2,
    stalledAfter: '15m',
    timeout: '24h',
    awaitingRegistrationDelay: '5m',
  },
  rateLimit: { statusQps: 5, pageQps: 5, concurrency: 8 },
  /** An account's `submitQps` when it sets none (the top-level `rateLimit` has no submit budget). */
  account: { submitQps: 5, reserve: 0 },
  devices: { fetch: true, includeSecrets: true },
  state: { backend: 'file', dir: './data/state', postgres: { urlEnv: 'IBW_DATABASE_URL', schema: 'iot_batch_watcher', lease: '15s' } },
  output: { resultsDir: './data/results' },
  webhook: { secretEnv: 'IBW_WEBHOOK_SECRET', timeout: '5s' },
  http: { listen: '127.0.0.1:9464', auth: { tokenEnv: 'IBW_HTTP_TOKEN', metrics: false } },
  housekeeping: { reloadConfig: '*/1 * * * *', summary: '*/15 * * * *', prune: '0 3 * * *', retention: '30d' },
  batch: { until: 'created', register: false },
} as const;

// ---------------------------------------------------------------------------------------------------------
// Messages

interface ErrorInput {
  code?: string;
  input?: unknown;
}

/** A zod `error` option whose message is ``expected <what>, got <found>``. */
function expect(what: string): { error: (issue: ErrorInput) => string | undefined } {
  return {
    // unrecognized_keys are turned into one issue per key by compile.ts, with the list of allowed keys.
    error: (issue) => (issue.code === 'unrecognized_keys' ? undefined : expectedGot(what, issue.input)),
  };
}

const MAPPING = 'a mapping';

// ---------------------------------------------------------------------------------------------------------
// Leaf schemas

function durationSchema(positive: boolean) {
  const what = positive ? DURATION_EXPECTED.replace('a duration', 'a duration > 0') : DURATION_EXPECTED;
  return z
    .union(
      [
        z.string(expect(what)).regex(DURATION_PATTERN, expect(what)),
        z.number(expect(what)).int(expect(what)).min(positive ? 1 : 0, expect(what)),
      ],
      expect(what),
    )
    .superRefine((value, ctx) => {
      // NOTE: zod runs this even after the regex failed (a continuable issue); that case is already reported.
      if (typeof value !== 'string' || !DURATION_PATTERN.test(value)) return;
      const parsed = tryParseDuration(value);
      if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.message, input: value });
      else if (positive && parsed.ms === 0) ctx.addIssue({ code: 'custom', message: expectedGot(what, value), input: value });
    });
}

/** A duration (string or integer milliseconds) that must be greater than zero. */
export const positiveDurationSchema = durationSchema(true);

export { isLoopbackHost };

/** Checks an http(s) URL by the one URL rule (src/url-rule.ts); returns a problem description or null. */
function urlProblem(value: string, originOnly: boolean): string | null {
  const check = checkUrl(value, { originOnly });
  return check.ok ? null : check.message;
}

function urlSchema(what: string, originOnly: boolean) {
  return z.string(expect(what)).superRefine((value, ctx) => {
    const problem = urlProblem(value, originOnly);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: `${expectedGot(what, value)}: ${problem}`, input: value });
  });
}

/** `host:port` as written in `http.listen`, parsed. IPv6 hosts are written in brackets and returned without. */
export function parseListen(value: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)):(\d{1,5})$/.exec(value);
  if (m === null) return null;
  const port = Number(m[3]);
  if (port > 65_535) return null;
  const host = m[1] ?? m[2];
  if (host === undefined) return null;
  if (m[1] !== undefined && !m[1].includes(':')) return null;
  return { host, port };
}

/** What `http.listen` and `IBW_HTTP_LISTEN` accept, for messages. */
export const LISTEN_EXPECTED = '"host:port" (port 0 to 65535, IPv6 in brackets) or "off"';
const listenSchema = z.string(expect(LISTEN_EXPECTED)).superRefine((value, ctx) => {
  if (value !== 'off' && parseListen(value) === null) {
    ctx.addIssue({ code: 'custom', message: expectedGot(LISTEN_EXPECTED, value), input: value });
  }
});

const CRON_EXPECTED = 'a cron expression like "*/15 * * * *" (minute hour day-of-month month day-of-week)';
const cronSchema = z.string(expect(CRON_EXPECTED)).superRefine((value, ctx) => {
  const result = validateDetailed(value);
  if (!result.valid) {
    const why = result.errors.map((e) => e.message).join('; ');
    ctx.addIssue({ code: 'custom', message: `${expectedGot(CRON_EXPECTED, value)}: ${why}`, input: value });
  }
});

const APPLY_ID_EXPECTED = 'an ApplyId: a positive integer, or a string of digits without leading zeros';
/** Decimal digits without a leading zero (the JSON Schema pattern of a string ApplyId). */
export const APPLY_ID_PATTERN = /^[1-9][0-9]*$/;

function applyIdMessage(issue: ErrorInput): string {
  const input = issue.input;
  const big =
    typeof input === 'bigint' || (typeof input === 'number' && Number.isInteger(input) && !Number.isSafeInteger(input));
  if (big) {
    const digits = typeof input === 'bigint' ? input.toString() : BigInt(input).toString();
    return (
      `${expectedGot(APPLY_ID_EXPECTED, input)}: integers above 9007199254740991 (2^53 - 1) lose precision, ` +
      `so write this ApplyId as a quoted string, "${digits}"`
    );
  }
  return expectedGot(APPLY_ID_EXPECTED, input);
}

const applyIdError = { error: (issue: ErrorInput) => applyIdMessage(issue) };
const applyIdSchema = z
  .union([z.string(applyIdError).regex(APPLY_ID_PATTERN, applyIdError), z.number(applyIdError).int(applyIdError).min(1, applyIdError)], applyIdError)
  .superRefine((value, ctx) => {
    if (typeof value === 'string' && APPLY_ID_PATTERN.test(value) && BigInt(value) > MAX_APPLY_ID) {
      ctx.addIssue({
        code: 'custom',
        message: `${expectedGot(APPLY_ID_EXPECTED, value)}: the largest ApplyId is ${MAX_APPLY_ID.toString()} (a Long)`,
        input: value,
      });
    }
  });

const PRODUCT_KEY_EXPECTED = 'a ProductKey (letters, digits, "_" or "-")';
/** What a ProductKey may be made of. */
export const PRODUCT_KEY_PATTERN = /^[A-Za-z0-9_-]+$/;
const productKeySchema = z.string(expect(PRODUCT_KEY_EXPECTED)).regex(PRODUCT_KEY_PATTERN, expect(PRODUCT_KEY_EXPECTED));

const REGION_EXPECTED = 'a region id like "cn-shanghai"';
const regionSchema = z.string(expect(REGION_EXPECTED)).regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, expect(REGION_EXPECTED));

const INSTANCE_EXPECTED = 'an IotInstanceId like "iot-060a0b1c" (no spaces)';
const instanceSchema = z.string(expect(INSTANCE_EXPECTED)).regex(/^\S+$/, expect(INSTANCE_EXPECTED));

function nonEmptyString(what: string) {
  return z.string(expect(what)).min(1, expect(what));
}

const ENV_NAME_EXPECTED = 'the name of an environment variable (letters, digits and "_", not starting with a digit)';
const envNameSchema = z.string(expect(ENV_NAME_EXPECTED)).superRefine((value, ctx) => {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(value)) {
    // NOTE: the value is not echoed: someone may have pasted the secret itself here.
    ctx.addIssue({
      code: 'custom',
      message: `expected ${ENV_NAME_EXPECTED}, got a string of ${value.length} characters that is not one (not shown: it may be a secret)`,
      input: value,
    });
  }
});

function booleanSchema() {
  return z.boolean(expect('true or false'));
}

function enumSchema<const T extends readonly [string, ...string[]]>(values: T) {
  const what = values.map((v) => quote(v)).join(' or ');
  return z.enum(values, expect(what));
}

// ---------------------------------------------------------------------------------------------------------
// Sections

/** The polling keys, with or without their defaults (per-batch overrides have none). */
function pollingShape(withDefaults: boolean) {
  const d = RAW_DEFAULTS.polling;
  const leaf = <S extends z.ZodType>(schema: S, def: unknown, description: string) =>
    withDefaults ? schema.default(def as never).describe(description) : schema.optional().describe(description);
  return {
    initialDelay: leaf(positiveDurationSchema, d.initialDelay, 'Lowest delay between polls; the first poll is immediate.'),
    maxDelay: leaf(positiveDurationSchema, d.maxDelay, 'Cap of the exponential backoff between polls.'),
    multiplier: leaf(
      z.number(expect('a number ≥ 1')).min(1, expect('a number ≥ 1')),
      d.multiplier,
      'Growth factor of the backoff cap per poll.',
    ),
    stalledAfter: leaf(positiveDurationSchema, d.stalledAfter, 'A phase longer than this emits batch.stalled once.'),
    timeout: leaf(positiveDurationSchema, d.timeout, 'From first sight of the batch; then the outcome is timed_out.'),
    awaitingRegistrationDelay: leaf(
      positiveDurationSchema,
      d.awaitingRegistrationDelay,
      'Poll cap while waiting in CHECK_SUCCESS for someone else to register.',
    ),
  };
}

const alibabaSchema = z
  .strictObject(
    {
      regionId: regionSchema.describe('Region of the IoT Platform, e.g. cn-shanghai.'),
      endpoint: urlSchema('an https:// URL without a path', true)
        .optional()
        .describe('Override of https://iot.<regionId>.aliyuncs.com; http:// only for loopback hosts.'),
      iotInstanceId: instanceSchema.optional().describe('Default IotInstanceId for every batch.'),
      signatureVersion: enumSchema(['v1', 'v3'] as const)
        .default(RAW_DEFAULTS.alibaba.signatureVersion)
        .describe('v3 = ACS3-HMAC-SHA256, v1 = HMAC-SHA1.'),
      requestTimeout: positiveDurationSchema.default(RAW_DEFAULTS.alibaba.requestTimeout).describe('Timeout of one API request.'),
      credentials: enumSchema(['env', 'chain'] as const)
        .default(RAW_DEFAULTS.alibaba.credentials)
        .describe('env: ALIBABA_CLOUD_* variables (or *_FILE); chain: the official default credential chain.'),
      failureWarnAfter: positiveDurationSchema
        .default(RAW_DEFAULTS.alibaba.failureWarnAfter)
        .describe('An API action failing this long without an answer logs one warn line; its recovery one info line.'),
    },
    expect(MAPPING),
  )
  .describe('The IoT Platform account and how to reach it.');

const pollingSchema = z.strictObject(pollingShape(true), expect(MAPPING)).prefault({}).describe('Polling defaults for every batch.');

const qps = (limit: number, action: string) => {
  const what = `a number > 0 and ≤ ${limit} (Alibaba's account limit for ${action} is ${limit} QPS)`;
  return z.number(expect(what)).gt(0, expect(what)).max(limit, expect(what));
};
const CONCURRENCY_EXPECTED = `an integer from 1 to ${MAX_CONCURRENCY}`;

const rateLimitSchema = z
  .strictObject(
    {
      statusQps: qps(STATUS_QPS_LIMIT, 'QueryBatchRegisterDeviceStatus')
        .default(RAW_DEFAULTS.rateLimit.statusQps)
        .describe('Requests per second for QueryBatchRegisterDeviceStatus, whole process.'),
      pageQps: qps(PAGE_QPS_LIMIT, 'QueryPageByApplyId')
        .default(RAW_DEFAULTS.rateLimit.pageQps)
        .describe('Requests per second for QueryPageByApplyId, whole process.'),
      concurrency: z
        .number(expect(CONCURRENCY_EXPECTED))
        .int(expect(CONCURRENCY_EXPECTED))
        .min(1, expect(CONCURRENCY_EXPECTED))
        .max(MAX_CONCURRENCY, expect(CONCURRENCY_EXPECTED))
        .default(RAW_DEFAULTS.rateLimit.concurrency)
        .describe('Requests in flight at once.'),
    },
    expect(MAPPING),
  )
  .prefault({})
  .describe('One API budget for the whole process.');

const ACCOUNT_NAME_EXPECTED = 'an account name: 1 to 40 lower-case letters, digits or "-"';
const accountNameSchema = z.string(expect(ACCOUNT_NAME_EXPECTED)).regex(ACCOUNT_NAME_PATTERN, expect(ACCOUNT_NAME_EXPECTED));

const RESERVE_EXPECTED = 'a share of the quota below 100%: a percentage like "20%" or a fraction from 0 up to (not including) 1';
/** `reserve` as a percentage string. */
export const RESERVE_PERCENT_PATTERN = /^(\d{1,2}(?:\.\d+)?)%$/;
const reserveSchema = z.union(
  [
    z.string(expect(RESERVE_EXPECTED)).regex(RESERVE_PERCENT_PATTERN, expect(RESERVE_EXPECTED)),
    z.number(expect(RESERVE_EXPECTED)).min(0, expect(RESERVE_EXPECTED)).lt(1, expect(RESERVE_EXPECTED)),
  ],
  expect(RESERVE_EXPECTED),
);

/** The fraction a valid `reserve` stands for: `"20%"` → 0.2. */
export function reserveFraction(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = RESERVE_PERCENT_PATTERN.exec(value);
  return m === null ? 0 : Number(m[1]) / 100;
}

const accountCredentialsSchema = z
  .strictObject(
    {
      mode: enumSchema(['env', 'chain'] as const)
        .optional()
        .describe('env (default when variable names are given): the variables below; chain: the official default credential chain.'),
      accessKeyIdEnv: envNameSchema.optional().describe('Env variable (or <NAME>_FILE) holding the AccessKey ID; the name only.'),
      accessKeySecretEnv: envNameSchema.optional().describe('Env variable (or <NAME>_FILE) holding the AccessKey secret; the name only.'),
      securityTokenEnv: envNameSchema.optional().describe('Optional env variable (or <NAME>_FILE) holding an STS token.'),
    },
    expect(MAPPING),
  )
  .describe("This account's credentials; without it the account uses alibaba.credentials (ALIBABA_CLOUD_* or chain).");

const accountRateLimitSchema = z
  .strictObject(
    {
      statusQps: qps(STATUS_QPS_LIMIT, 'QueryBatchRegisterDeviceStatus')
        .optional()
        .describe("This account's QueryBatchRegisterDeviceStatus budget before reserve; default rateLimit.statusQps."),
      pageQps: qps(PAGE_QPS_LIMIT, 'QueryPageByApplyId')
        .optional()
        .describe("This account's QueryPageByApplyId budget before reserve; default rateLimit.pageQps."),
      submitQps: qps(SUBMIT_QPS_LIMIT, 'BatchCheckDeviceNames and BatchRegisterDevice')
        .optional()
        .describe(`This account's provisioning submit budget before reserve; default ${RAW_DEFAULTS.account.submitQps}.`),
      concurrency: z
        .number(expect(CONCURRENCY_EXPECTED))
        .int(expect(CONCURRENCY_EXPECTED))
        .min(1, expect(CONCURRENCY_EXPECTED))
        .max(MAX_CONCURRENCY, expect(CONCURRENCY_EXPECTED))
        .optional()
        .describe("This account's requests in flight at once; default rateLimit.concurrency."),
    },
    expect(MAPPING),
  )
  .describe("This account's own budget; unset keys inherit the top-level rateLimit.");

/** One entry of `accounts`, as written (DESIGN.md §11). */
export const accountSchema = z
  .strictObject(
    {
      name: accountNameSchema.describe('The account name batches refer to ([a-z0-9-]{1,40}).'),
      regionId: regionSchema.optional().describe('Region of this account; default alibaba.regionId.'),
      endpoint: urlSchema('an https:// URL without a path', true)
        .optional()
        .describe("Override of this account's endpoint; default alibaba.endpoint (same region) or the region's public one."),
      iotInstanceId: instanceSchema.optional().describe('Default IotInstanceId of this account; default alibaba.iotInstanceId.'),
      signatureVersion: enumSchema(['v1', 'v3'] as const).optional().describe('v3 or v1; default alibaba.signatureVersion.'),
      requestTimeout: positiveDurationSchema.optional().describe('Total deadline of one API request; default alibaba.requestTimeout.'),
      credentials: accountCredentialsSchema.optional(),
      rateLimit: accountRateLimitSchema.optional(),
      reserve: reserveSchema
        .optional()
        .describe('Share of the quota left for other callers of this account: each QPS budget is multiplied by (1 - reserve).'),
    },
    expect('a mapping with at least name'),
  )
  .describe('One Alibaba Cloud account: its own credentials, endpoint and budget.');

const devicesSchema = z
  .strictObject(
    {
      fetch: booleanSchema().default(RAW_DEFAULTS.devices.fetch).describe('Page QueryPageByApplyId when a batch settles with created devices.'),
      includeSecrets: booleanSchema()
        .default(RAW_DEFAULTS.devices.includeSecrets)
        .describe('Write DeviceSecret into result files (then mode 0600).'),
    },
    expect(MAPPING),
  )
  .prefault({})
  .describe('What to fetch about created devices.');

const PATH_EXPECTED = 'a file system path';

const PG_SCHEMA_EXPECTED = 'a PostgreSQL schema name (lower-case letters, digits and "_", not starting with a digit, at most 63)';
const pgSchemaNameSchema = z.string(expect(PG_SCHEMA_EXPECTED)).regex(/^[a-z_][a-z0-9_]{0,62}$/, expect(PG_SCHEMA_EXPECTED));

/** `state.postgres.ssl.mode`: libpq's sslmode names (pg 8 reads `sslmode=require` in a URL as verify-full). */
export const PG_SSL_MODES = ['disable', 'require', 'verify-full'] as const;

const statePostgresSslSchema = z
  .strictObject(
    {
      mode: enumSchema(PG_SSL_MODES).describe(
        'disable: no TLS; require: TLS, the certificate checked only against caFile when given; verify-full: TLS, certificate and host name checked.',
      ),
      caFile: nonEmptyString(PATH_EXPECTED)
        .optional()
        .describe('PEM file of the CA that signed the server certificate (the RDS CA bundle); default: the system CAs.'),
    },
    expect(MAPPING),
  )
  .optional()
  .describe("TLS to the database; when set it wins over the URL's sslmode/sslrootcert and PGSSLMODE.");

const statePostgresSchema = z
  .strictObject(
    {
      urlEnv: envNameSchema
        .default(RAW_DEFAULTS.state.postgres.urlEnv)
        .describe('Env variable with the connection URL (or <NAME>_FILE); PG* variables fill gaps.'),
      schema: pgSchemaNameSchema
        .default(RAW_DEFAULTS.state.postgres.schema)
        .describe('Schema created and migrated on start (versioned, never destructive).'),
      lease: positiveDurationSchema
        .default(RAW_DEFAULTS.state.postgres.lease)
        .describe("Ownership of an account lapses this long after its owner stops renewing."),
      ssl: statePostgresSslSchema,
    },
    expect(MAPPING),
  )
  .prefault({})
  .describe('The PostgreSQL backend (state.backend: postgres).');

const stateSchema = z
  .strictObject(
    {
      backend: enumSchema(['file', 'postgres'] as const)
        .default(RAW_DEFAULTS.state.backend)
        .describe('Where durable state lives: file (state.dir) or postgres.'),
      dir: nonEmptyString(PATH_EXPECTED).default(RAW_DEFAULTS.state.dir).describe('Directory of the durable ledger.'),
      postgres: statePostgresSchema,
    },
    expect(MAPPING),
  )
  .prefault({})
  .describe('Durable state.');

const webhookSchema = z
  .strictObject(
    {
      url: urlSchema('an https:// URL', false).describe('Receives every event as a POST; http:// only for loopback hosts.'),
      secretEnv: envNameSchema.default(RAW_DEFAULTS.webhook.secretEnv).describe('Env variable holding the HMAC key.'),
      timeout: positiveDurationSchema.default(RAW_DEFAULTS.webhook.timeout).describe('Timeout of one delivery.'),
    },
    expect(MAPPING),
  )
  .describe('Optional webhook sink.');

const outputSchema = z
  .strictObject(
    {
      resultsDir: nonEmptyString(PATH_EXPECTED)
        .default(RAW_DEFAULTS.output.resultsDir)
        .describe('Result files go to <resultsDir>/<productKey>/<applyId>.json.'),
      eventsFile: nonEmptyString(PATH_EXPECTED).optional().describe('Append every event as one JSON line.'),
      webhook: webhookSchema.optional(),
    },
    expect(MAPPING),
  )
  .prefault({})
  .describe('Where results and events go.');

const httpAuthSchema = z
  .strictObject(
    {
      tokenEnv: envNameSchema
        .default(RAW_DEFAULTS.http.auth.tokenEnv)
        .describe('Env variable (or <NAME>_FILE) holding the bearer token; the name only, never the token.'),
      metrics: booleanSchema().default(RAW_DEFAULTS.http.auth.metrics).describe('Also require the token on /metrics.'),
    },
    expect(MAPPING),
  )
  .describe('Optional bearer token required on /v1/* (and /metrics when asked); /healthz and /readyz stay open.');

const httpSchema = z
  .strictObject(
    {
      listen: listenSchema
        .default(RAW_DEFAULTS.http.listen)
        .describe('host:port of /healthz /readyz /metrics /v1/batches; "off" disables.'),
      auth: httpAuthSchema.optional(),
    },
    expect(MAPPING),
  )
  .prefault({})
  .describe('The operations HTTP server.');

const housekeepingSchema = z
  .strictObject(
    {
      reloadConfig: cronSchema.default(RAW_DEFAULTS.housekeeping.reloadConfig).describe('When to re-read this file (UTC).'),
      summary: cronSchema.default(RAW_DEFAULTS.housekeeping.summary).describe('When to log one summary line (UTC).'),
      prune: cronSchema.default(RAW_DEFAULTS.housekeeping.prune).describe('When to drop old settled batches from the ledger (UTC).'),
      retention: positiveDurationSchema
        .default(RAW_DEFAULTS.housekeeping.retention)
        .describe('How long settled batches stay in the ledger.'),
    },
    expect(MAPPING),
  )
  .prefault({})
  .describe('Periodic jobs, as node-cron expressions.');

const LABELS_EXPECTED = 'a mapping of label names to strings';
const LABEL_NAME_EXPECTED = `a non-empty label name of at most ${MAX_TEXT_LENGTH} characters`;
const LABEL_VALUE_EXPECTED = `a string of at most ${MAX_TEXT_LENGTH} characters`;
const labelsSchema = z.record(
  // NOTE: zod drops a `__proto__` key silently; cross-checks.ts refuses it instead.
  z.string().min(1).max(MAX_TEXT_LENGTH),
  z.string(expect('a string (quote numbers and booleans)')).max(MAX_TEXT_LENGTH, expect(LABEL_VALUE_EXPECTED)),
  {
    error: (issue: ErrorInput) =>
      issue.code === 'invalid_key' ? expectedGot(LABEL_NAME_EXPECTED, issue.input) : expectedGot(LABELS_EXPECTED, issue.input),
  },
);

const NAME_EXPECTED = `a non-empty string of at most ${MAX_TEXT_LENGTH} characters`;

/** One entry of `batches`, as written. */
export const batchSchema = z
  .strictObject(
    {
      applyId: applyIdSchema.describe('The ApplyId; quote ApplyIds of 2^53 and beyond.'),
      productKey: productKeySchema.describe('The ProductKey the batch belongs to.'),
      name: nonEmptyString(NAME_EXPECTED).max(MAX_TEXT_LENGTH, expect(NAME_EXPECTED)).optional().describe('Label for logs and results.'),
      until: enumSchema(['created', 'checked'] as const)
        .default(RAW_DEFAULTS.batch.until)
        .describe('created: watch through CREATE; checked: stop at CHECK_SUCCESS.'),
      register: booleanSchema()
        .default(RAW_DEFAULTS.batch.register)
        .describe('On CHECK_SUCCESS, call BatchRegisterDeviceWithApplyId once ourselves.'),
      iotInstanceId: instanceSchema.optional().describe("Overrides the account's iotInstanceId."),
      regionId: regionSchema.optional().describe("Overrides the account's regionId (and uses that region's default endpoint)."),
      labels: labelsSchema.optional().describe('Copied into events and results.'),
      polling: z.strictObject(pollingShape(false), expect(MAPPING)).optional().describe('Overrides of any polling key.'),
      account: accountNameSchema.optional().describe('The account (accounts[].name) the batch belongs to; default the first account.'),
    },
    expect('a mapping with at least applyId and productKey'),
  )
  .describe('One batch registration to watch.');

// ---------------------------------------------------------------------------------------------------------
// Provisioning jobs (DESIGN.md §13). `devices` XOR `count`, unique names and label keys are cross-checks
// (provision-checks.ts), for the same reason as the batch rules.

/** Largest names per chunk: BatchCheckDeviceNames takes at most 10,000 names, BatchRegisterDevice a Count ≤ 10,000. */
export const MAX_CHUNK_SIZE = 10_000;
/** Largest `count`: Alibaba's per-product device cap (3,000,000 in cn-shanghai, less elsewhere). */
export const MAX_PROVISION_COUNT = 3_000_000;
/** What a provisioning job's name may be: it is part of the result file names `provision-<name>.json`. */
export const PROVISION_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const PROVISION_NAME_EXPECTED = 'a job name: 1 to 64 letters, digits, ".", "_" or "-", not starting with "." "_" or "-"';
/** Defaults of a `provision` entry. chunkSize is 1,000, not 10,000: X.509 products and some regions still cap a check at 1,000 names. */
export const PROVISION_DEFAULTS = { chunkSize: 1000, until: 'created' } as const;
const CHUNK_SIZE_EXPECTED = `an integer from 1 to ${MAX_CHUNK_SIZE}`;
const COUNT_EXPECTED = `an integer from 1 to ${MAX_PROVISION_COUNT}`;

/** One entry of `provision`, as written. */
export const provisionSchema = z
  .strictObject(
    {
      name: z
        .string(expect(PROVISION_NAME_EXPECTED))
        .regex(PROVISION_NAME_PATTERN, expect(PROVISION_NAME_EXPECTED))
        .describe('Unique; identifies the job in events, result files and status.'),
      productKey: productKeySchema.describe('The ProductKey the devices are created in.'),
      account: nonEmptyString(NAME_EXPECTED).max(MAX_TEXT_LENGTH, expect(NAME_EXPECTED)).optional().describe('The account to submit under.'),
      devices: nonEmptyString(PATH_EXPECTED)
        .optional()
        .describe('Device file: .csv (header, DeviceName[,Nickname]), .jsonl ({"deviceName","nickname"?}) or .txt (one name a line).'),
      count: z
        .number(expect(COUNT_EXPECTED))
        .int(expect(COUNT_EXPECTED))
        .min(1, expect(COUNT_EXPECTED))
        .max(MAX_PROVISION_COUNT, expect(COUNT_EXPECTED))
        .optional()
        .describe('Instead of devices: this many devices with random names (BatchRegisterDevice).'),
      chunkSize: z
        .number(expect(CHUNK_SIZE_EXPECTED))
        .int(expect(CHUNK_SIZE_EXPECTED))
        .min(1, expect(CHUNK_SIZE_EXPECTED))
        .max(MAX_CHUNK_SIZE, expect(CHUNK_SIZE_EXPECTED))
        .default(PROVISION_DEFAULTS.chunkSize)
        .describe('Names (or devices) per ApplyId.'),
      until: enumSchema(['created', 'checked'] as const)
        .default(PROVISION_DEFAULTS.until)
        .describe('created: register every chunk; checked: check the names only.'),
      labels: labelsSchema.optional().describe('Copied into events and the report.'),
    },
    expect('a mapping with at least name, productKey and devices or count'),
  )
  .describe('One provisioning job.');

/** One entry of `provision` after validation. */
export type RawProvision = z.output<typeof provisionSchema>;

/** The whole configuration file. */
export const configSchema = z
  .strictObject(
    {
      // NOTE: required without `accounts` (it is the one account); beside `accounts` it is optional, the defaults every
      // account inherits, and then each account needs its own regionId (both rules in cross-checks.ts).
      alibaba: alibabaSchema.optional(),
      accounts: z
        .array(accountSchema, expect('a list of accounts'))
        .min(1, expect('a list of at least one account'))
        .optional()
        .describe('Several Alibaba Cloud accounts in one process; without it, alibaba + rateLimit are the one account "default".'),
      polling: pollingSchema,
      rateLimit: rateLimitSchema,
      devices: devicesSchema,
      state: stateSchema,
      output: outputSchema,
      http: httpSchema,
      housekeeping: housekeepingSchema,
      batches: z.array(batchSchema, expect('a list of batches')).default([]).describe('The batches to watch.'),
      provision: z.array(provisionSchema, expect('a list of provisioning jobs')).default([]).describe('Fleets to submit (DESIGN.md §13).'),
    },
    expect('a mapping of configuration sections (alibaba, polling, batches, …)'),
  )
  .describe('iot-batch-watcher configuration (see docs/configuration.md).');

/** The configuration as a user writes it (durations as strings or integers, defaults optional). */
export type RawConfigInput = z.input<typeof configSchema>;
/** The configuration after validation: defaults filled, durations still as written. */
export type RawConfig = z.output<typeof configSchema>;
/** One batch entry after validation. */
export type RawBatch = z.output<typeof batchSchema>;

// ---------------------------------------------------------------------------------------------------------
// Walking the schema (for unknown-key hints and the documentation test)

type AnySchema = z.core.$ZodType;
type Def = { type: string; innerType?: AnySchema; in?: AnySchema; shape?: Record<string, AnySchema>; element?: AnySchema };

function defOf(schema: AnySchema): Def {
  return schema._zod.def;
}

function unwrap(schema: AnySchema): AnySchema {
  let current = schema;
  for (;;) {
    const def = defOf(current);
    if (def.innerType !== undefined) current = def.innerType;
    else if (def.type === 'pipe' && def.in !== undefined) current = def.in;
    else return current;
  }
}

/**
 * The keys allowed in the mapping at `path` (array indices may be any number), or null when `path` does not
 * lead to a mapping of the schema.
 */
export function allowedKeysAt(path: readonly PropertyKey[]): string[] | null {
  let current = unwrap(configSchema);
  for (const segment of path) {
    const def = defOf(current);
    if (def.type === 'object' && def.shape !== undefined && typeof segment === 'string' && segment in def.shape) {
      current = unwrap(def.shape[segment]!);
    } else if (def.type === 'array' && def.element !== undefined && typeof segment === 'number') {
      current = unwrap(def.element);
    } else {
      return null;
    }
  }
  const def = defOf(current);
  return def.type === 'object' && def.shape !== undefined ? Object.keys(def.shape) : null;
}

/**
 * Every leaf key of the schema as a dotted path; entries of `batches` appear as `batches[].applyId`,
 * `batches[].polling.maxDelay`, … A leaf is anything that is not a mapping with fixed keys (so `batches[].labels`
 * is a leaf).
 */
export function listSchemaKeys(): string[] {
  const out: string[] = [];
  const walk = (schema: AnySchema, prefix: string): void => {
    const def = defOf(unwrap(schema));
    if (def.type === 'object' && def.shape !== undefined) {
      for (const [key, child] of Object.entries(def.shape)) walk(child, prefix === '' ? key : `${prefix}.${key}`);
    } else if (def.type === 'array' && def.element !== undefined && defOf(unwrap(def.element)).type === 'object') {
      walk(def.element, `${prefix}[]`);
    } else {
      out.push(prefix);
    }
  };
  walk(configSchema, '');
  return out;
}
