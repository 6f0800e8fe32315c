/**
 * raw → validated → compiled (style guide rule 5: load → compile → freeze).
 *
 * `validateAndCompile` is the one pipeline both entry points share: `load.ts` (YAML text, with file positions)
 * and `compileConfigObject` (programmatic configs, positions `<object>:0:0`). It collects every issue from the
 * zod schema and from the cross-key rules, then either throws one ConfigError with all of them or returns the
 * CompiledConfig: every duration in `*Ms`, every default filled, paths absolute, deeply frozen.
 */

import { hash } from 'node:crypto';
import path from 'node:path';

import type { z } from 'zod';

import { CREDENTIAL_ENV_VARS } from '../alibaba/credentials.js';
import { batchKey } from '../core/record.js';
import { ConfigError } from '../errors.js';
import type { ConfigIssue } from '../errors.js';
import { type BatchFields, StringPool, compactBatch, ownString } from './compact-batch.js';
import { type ConfigPath, type IssueAnchor, type PathIssue, checkRootSections, crossCheck, formatPath } from './cross-checks.js';
import { parseDuration } from './duration.js';
import {
  ACCOUNT_NAME_PATTERN,
  DEFAULT_ACCOUNT,
  RAW_DEFAULTS,
  type RawBatch,
  type RawConfig,
  allowedKeysAt,
  batchSchema,
  configSchema,
  parseListen,
  type RawProvision,
  reserveFraction,
} from './schema.js';
import type {
  AccountConfig,
  AccountCredentials,
  AlibabaConfig,
  BatchConfig,
  CompiledConfig,
  PollingPolicy,
  ProvisionJobConfig,
  Until,
} from './types.js';

/** Options of {@link compileConfigObject}. */
export interface CompileOptions {
  /**
   * Directory that relative paths (`state.dir`, `output.resultsDir`, `output.eventsFile`) resolve against.
   * @default process.cwd()
   */
  cwd?: string;
}

/** How the pipeline learns positions; `load.ts` implements it over the YAML document. */
export interface SourceMap {
  /** Shown as ConfigIssue.file: the path as the user gave it, or `<object>`. */
  displayFile: string;
  /** CompiledConfig.file: the absolute path, or null for programmatic configs. */
  absoluteFile: string | null;
  /** 1-based line and column of `path` (0:0 when unknown). */
  position(path: ConfigPath, anchor: IssueAnchor): { line: number; col: number };
  /** Names another location in messages: `batches[0] (line 12)`. */
  describe(path: ConfigPath): string;
  /** Whether positions are real (YAML) or all 0:0 (objects); BatchConfig.source is null for the latter. */
  hasPositions: boolean;
}

/** The SourceMap of a programmatic config: no positions, file `<object>`. */
export const OBJECT_SOURCE: SourceMap = {
  displayFile: '<object>',
  absoluteFile: null,
  position: () => ({ line: 0, col: 0 }),
  describe: (p) => formatPath(p),
  hasPositions: false,
};

// ---------------------------------------------------------------------------------------------------------
// Issues

function closest(word: string, candidates: readonly string[]): string | null {
  const lower = word.toLowerCase();
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = candidate.toLowerCase() === lower ? 0 : editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(1, Math.floor(word.length / 4)) ? best : null;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

const SECRET_LIKE = /secret|password|token|accesskey/i;

/** The message of an unknown key: the allowed keys, a suggestion, and a word about secrets where fitting. */
export function unknownKeyMessage(parent: ConfigPath, key: string): string {
  const allowed = allowedKeysAt(parent) ?? [];
  let message = `unknown key, expected one of: ${allowed.join(', ')}`;
  const suggestion = closest(key, allowed);
  if (suggestion !== null) message += ` (did you mean "${suggestion}"?)`;
  if (SECRET_LIKE.test(key)) {
    message += '; secrets never live in this file: set ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET or *_FILE in the environment';
  }
  return message;
}

function pathOf(issue: z.core.$ZodIssue): (string | number)[] {
  return issue.path.filter((p): p is string | number => typeof p === 'string' || typeof p === 'number');
}

/** Converts zod issues to PathIssues: one per unknown key, missing keys anchored at their mapping. */
export function fromZodIssues(issues: readonly z.core.$ZodIssue[]): PathIssue[] {
  const out: PathIssue[] = [];
  for (const issue of issues) {
    const p = pathOf(issue);
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: [...p, key], anchor: 'key', message: unknownKeyMessage(p, key) });
    } else {
      const missing = issue.code === 'invalid_type' && issue.input === undefined && p.length > 0;
      // A bad mapping key (a label name) is pointed at where the key is written.
      const anchor = missing ? 'parent' : issue.code === 'invalid_key' ? 'key' : 'value';
      out.push({ path: p, anchor, message: issue.message });
    }
  }
  return out;
}

function toConfigIssues(issues: readonly PathIssue[], source: SourceMap): ConfigIssue[] {
  const seen = new Set<string>();
  const out: ConfigIssue[] = [];
  for (const issue of issues) {
    const dotted = formatPath(issue.path);
    const key = `${dotted}\u0000${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const { line, col } = source.position(issue.path, issue.anchor);
    out.push({ file: source.displayFile, line, col, path: dotted, message: issue.message });
  }
  return out;
}

/** Sorts issues by position; stable, so issues on the same position keep the order they were found in. */
export function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return issues.sort((a, b) => a.line - b.line || a.col - b.col);
}

// ---------------------------------------------------------------------------------------------------------
// Compile

/** Sorted-key JSON, so reordering the keys of an entry does not change its hash. */
export function canonicalJson(value: unknown): string {
  // NOTE: written as loops, not map/filter/join chains: at 100,000 entries this runs on every load (issue #14).
  // The output must stay byte for byte what it was: ledgers keep these hashes to notice changed entries.
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object' || value === null) return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i += 1) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const v = record[k];
    if (v === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(k)}:${canonicalJson(v)}`;
    first = false;
  }
  return `${out}}`;
}

/** sha256 (hex) of the canonical JSON of a batch entry as written. */
export function hashBatchEntry(entry: unknown): string {
  return hash('sha256', canonicalJson(entry), 'hex');
}

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/** The public endpoint of a region. */
export function defaultEndpoint(regionId: string): string {
  return `https://iot.${regionId}.aliyuncs.com`;
}

function pollingMs(p: Partial<Record<keyof RawConfig['polling'], string | number>>, base: PollingPolicy): PollingPolicy {
  const ms = (v: string | number | undefined, fallback: number): number => (v === undefined ? fallback : parseDuration(v));
  return {
    initialDelayMs: ms(p.initialDelay, base.initialDelayMs),
    maxDelayMs: ms(p.maxDelay, base.maxDelayMs),
    multiplier: typeof p.multiplier === 'number' ? p.multiplier : base.multiplier,
    stalledAfterMs: ms(p.stalledAfter, base.stalledAfterMs),
    timeoutMs: ms(p.timeout, base.timeoutMs),
    awaitingRegistrationDelayMs: ms(p.awaitingRegistrationDelay, base.awaitingRegistrationDelayMs),
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** What the batches of one account inherit from it. */
export interface AccountDefaults {
  regionId: string;
  iotInstanceId: string | null;
  /** The endpoint of `regionId`. */
  endpoint: string;
}

/** What every batch of one configuration inherits. */
export interface BatchContext {
  regionId: string;
  iotInstanceId: string | null;
  /** The endpoint of `regionId`. */
  endpoint: string;
  polling: PollingPolicy;
  source: SourceMap;
  /** The account of a batch that names none. @default 'default' */
  account?: string;
  /** Per account name, what its batches inherit instead of the fields above. */
  accounts?: ReadonlyMap<string, AccountDefaults>;
  /** The shared copies of this load's repeated strings. @default a pool per batch */
  strings?: StringPool;
}

/** `alibaba` compiled: the defaults every account inherits. */
function compileAlibaba(data: RawConfig): AlibabaConfig {
  // NOTE: without `alibaba` (only beside `accounts`, which the cross-checks ensure) the defaults are the first
  // account's region with every other key at its default.
  const a = data.alibaba ?? {
    regionId: data.accounts?.[0]?.regionId ?? '',
    signatureVersion: RAW_DEFAULTS.alibaba.signatureVersion,
    requestTimeout: RAW_DEFAULTS.alibaba.requestTimeout,
    credentials: RAW_DEFAULTS.alibaba.credentials,
    failureWarnAfter: RAW_DEFAULTS.alibaba.failureWarnAfter,
  };
  return {
    regionId: a.regionId,
    endpoint: a.endpoint === undefined ? defaultEndpoint(a.regionId) : new URL(a.endpoint).origin,
    iotInstanceId: a.iotInstanceId ?? null,
    signatureVersion: a.signatureVersion,
    requestTimeoutMs: parseDuration(a.requestTimeout),
    credentials: a.credentials,
    failureWarnAfterMs: parseDuration(a.failureWarnAfter),
  };
}

const DEFAULT_ENV_CREDENTIALS: AccountCredentials = {
  mode: 'env',
  accessKeyIdEnv: CREDENTIAL_ENV_VARS.accessKeyId,
  accessKeySecretEnv: CREDENTIAL_ENV_VARS.accessKeySecret,
  securityTokenEnv: CREDENTIAL_ENV_VARS.securityToken,
};

function inheritedCredentials(alibaba: AlibabaConfig): AccountCredentials {
  return alibaba.credentials === 'chain' ? { mode: 'chain' } : DEFAULT_ENV_CREDENTIALS;
}

/**
 * The accounts of DESIGN.md §11. Without `accounts`: the one account `default`, exactly `alibaba` + `rateLimit`.
 * Each QPS budget is the account's figure (its own, or the top-level `rateLimit`'s) × (1 − reserve), so a user
 * can write Alibaba's quota and the share other callers of the account need.
 */
function compileAccounts(data: RawConfig, alibaba: AlibabaConfig, source: SourceMap): AccountConfig[] {
  const top = data.rateLimit;
  if (data.accounts === undefined) {
    const a = alibaba;
    const quota = { statusQps: top.statusQps, pageQps: top.pageQps, submitQps: RAW_DEFAULTS.account.submitQps };
    return [
      {
        name: DEFAULT_ACCOUNT,
        regionId: a.regionId,
        endpoint: a.endpoint,
        iotInstanceId: a.iotInstanceId,
        signatureVersion: a.signatureVersion,
        requestTimeoutMs: a.requestTimeoutMs,
        credentials: inheritedCredentials(a),
        rateLimit: { ...quota, concurrency: top.concurrency },
        quota,
        reserve: 0,
        source: null,
      },
    ];
  }
  return data.accounts.map((acc, index) => {
    const regionId = acc.regionId ?? alibaba.regionId;
    const endpoint =
      acc.endpoint !== undefined
        ? new URL(acc.endpoint).origin
        : regionId === alibaba.regionId
          ? alibaba.endpoint
          : defaultEndpoint(regionId);
    const c = acc.credentials;
    const credentials: AccountCredentials =
      c === undefined
        ? inheritedCredentials(alibaba)
        : c.mode === 'chain'
          ? { mode: 'chain' }
          : { mode: 'env', accessKeyIdEnv: c.accessKeyIdEnv!, accessKeySecretEnv: c.accessKeySecretEnv!, securityTokenEnv: c.securityTokenEnv ?? null };
    const own = acc.rateLimit ?? {};
    const quota = {
      statusQps: own.statusQps ?? top.statusQps,
      pageQps: own.pageQps ?? top.pageQps,
      submitQps: own.submitQps ?? RAW_DEFAULTS.account.submitQps,
    };
    const reserve = acc.reserve === undefined ? RAW_DEFAULTS.account.reserve : reserveFraction(acc.reserve);
    const share = (qps: number) => qps * (1 - reserve);
    const position = source.position(['accounts', index], 'value');
    return {
      name: acc.name,
      regionId,
      endpoint,
      iotInstanceId: acc.iotInstanceId ?? alibaba.iotInstanceId,
      signatureVersion: acc.signatureVersion ?? alibaba.signatureVersion,
      requestTimeoutMs: acc.requestTimeout === undefined ? alibaba.requestTimeoutMs : parseDuration(acc.requestTimeout),
      credentials,
      rateLimit: {
        statusQps: share(quota.statusQps),
        pageQps: share(quota.pageQps),
        submitQps: share(quota.submitQps),
        concurrency: own.concurrency ?? top.concurrency,
      },
      quota,
      reserve,
      source: source.hasPositions ? { file: source.displayFile, line: position.line, col: position.col } : null,
    };
  });
}

function batchContext(data: RawConfig, alibaba: AlibabaConfig, accounts: readonly AccountConfig[], source: SourceMap): BatchContext {
  const polling = pollingMs(data.polling, {
    initialDelayMs: 0,
    maxDelayMs: 0,
    multiplier: 1,
    stalledAfterMs: 0,
    timeoutMs: 0,
    awaitingRegistrationDelayMs: 0,
  });
  const first = accounts[0]!;
  const byName = new Map<string, AccountDefaults>();
  for (const acc of accounts) byName.set(acc.name, { regionId: acc.regionId, iotInstanceId: acc.iotInstanceId, endpoint: acc.endpoint });
  return {
    regionId: alibaba.regionId,
    iotInstanceId: alibaba.iotInstanceId,
    endpoint: alibaba.endpoint,
    polling,
    source,
    account: first.name,
    accounts: byName,
    strings: new StringPool(),
  };
}

function compileBatch(b: RawBatch, rawEntry: unknown, index: number, ctx: BatchContext): BatchConfig {
  // NOTE: every string kept per batch is a copy of its own or one shared copy (compact-batch.ts): strings read
  // from the file text keep the whole text alive otherwise (issue #14).
  const pool = ctx.strings ?? new StringPool();
  const applyId = ownString(String(b.applyId));
  const account = pool.shared(b.account ?? ctx.account ?? DEFAULT_ACCOUNT);
  const productKey = pool.shared(b.productKey);
  const inherited = ctx.accounts?.get(account) ?? ctx;
  const regionId = pool.shared(b.regionId ?? inherited.regionId);
  const fields: BatchFields = {
    account,
    applyId,
    productKey,
    key: ownString(batchKey(productKey, applyId, account)),
    name: b.name === undefined || b.name === null ? null : ownString(b.name),
    until: pool.shared(b.until) as Until,
    register: b.register,
    iotInstanceId: pool.sharedOrNull(b.iotInstanceId ?? inherited.iotInstanceId),
    regionId,
    // NOTE: a batch in another region talks to that region's public endpoint, even when the account's endpoint
    // overrides the endpoint of its main region (the override is per region by nature).
    endpoint: regionId === inherited.regionId ? inherited.endpoint : pool.shared(defaultEndpoint(regionId)),
    // NOTE: zod's output is already a fresh object of our own: no copy (100,000 of them at scale).
    labels: b.labels === undefined || Object.keys(b.labels).length === 0 ? NO_LABELS : shareValues(b.labels, pool),
    // NOTE: batches without overrides share one frozen policy (100,000 batches, one object).
    polling: b.polling === undefined || Object.keys(b.polling).length === 0 ? ctx.polling : pollingMs(b.polling, ctx.polling),
    entryHash: hashBatchEntry(rawEntry),
  };
  // NOTE: the batch comes back frozen, so deepFreeze stops at it: its own objects are frozen here.
  Object.freeze(fields.labels);
  Object.freeze(fields.polling);
  if (!ctx.source.hasPositions) return compactBatch(fields, null);
  const position = ctx.source.position(['batches', index], 'value');
  return compactBatch(fields, { file: ctx.source.displayFile, line: position.line, col: position.col });
}

/** `labels` with each value replaced by the pool's copy (label values repeat across batches). */
function shareValues(labels: Record<string, string>, pool: StringPool): Record<string, string> {
  for (const k of Object.keys(labels)) labels[k] = pool.shared(labels[k]!);
  return labels;
}

function compileProvision(p: RawProvision, index: number, source: SourceMap, cwd: string): ProvisionJobConfig {
  const position = source.position(['provision', index], 'value');
  return {
    name: p.name,
    productKey: p.productKey,
    account: p.account ?? null,
    // NOTE: the cross-checks guarantee exactly one of devices and count.
    source: p.devices !== undefined ? { kind: 'devices', file: path.resolve(cwd, p.devices) } : { kind: 'count', count: p.count ?? 0 },
    chunkSize: p.chunkSize,
    until: p.until,
    labels: p.labels === undefined || Object.keys(p.labels).length === 0 ? NO_LABELS : p.labels,
    position: source.hasPositions ? { file: source.displayFile, line: position.line, col: position.col } : null,
  };
}

/** The parts every batch needs, compiled once. */
interface Prepared {
  alibaba: AlibabaConfig;
  accounts: AccountConfig[];
  ctx: BatchContext;
}

function prepare(data: RawConfig, source: SourceMap): Prepared {
  const alibaba = compileAlibaba(data);
  const accounts = compileAccounts(data, alibaba, source);
  return { alibaba, accounts, ctx: batchContext(data, alibaba, accounts, source) };
}

function compileValid(data: RawConfig, prepared: Prepared, batches: BatchConfig[], cwd: string): CompiledConfig {
  const { polling, source } = prepared.ctx;
  const listen = data.http.listen === 'off' ? null : parseListen(data.http.listen);
  const webhook = data.output.webhook;

  const compiled: CompiledConfig = {
    file: source.absoluteFile,
    alibaba: prepared.alibaba,
    accounts: prepared.accounts,
    polling,
    rateLimit: { ...data.rateLimit },
    devices: { ...data.devices },
    state: {
      backend: data.state.backend,
      dir: path.resolve(cwd, data.state.dir),
      postgres: {
        urlEnv: data.state.postgres.urlEnv,
        schema: data.state.postgres.schema,
        leaseMs: parseDuration(data.state.postgres.lease),
        ...(data.state.postgres.ssl === undefined
          ? {}
          : {
              ssl: {
                mode: data.state.postgres.ssl.mode,
                ...(data.state.postgres.ssl.caFile === undefined ? {} : { caFile: path.resolve(cwd, data.state.postgres.ssl.caFile) }),
              },
            }),
      },
    },
    output: {
      resultsDir: path.resolve(cwd, data.output.resultsDir),
      eventsFile: data.output.eventsFile === undefined ? null : path.resolve(cwd, data.output.eventsFile),
      webhook:
        webhook === undefined ? null : { url: webhook.url, secretEnv: webhook.secretEnv, timeoutMs: parseDuration(webhook.timeout) },
      // NOTE: absent without `accounts`: the old layout, and the compiled output of such a file unchanged.
      ...(data.accounts === undefined ? {} : { resultsLayout: 'account' as const }),
    },
    http: { listen, ...(data.http.auth === undefined ? {} : { auth: { tokenEnv: data.http.auth.tokenEnv, metrics: data.http.auth.metrics } }) },
    housekeeping: {
      reloadConfig: data.housekeeping.reloadConfig,
      summary: data.housekeeping.summary,
      prune: data.housekeeping.prune,
      retentionMs: parseDuration(data.housekeeping.retention),
    },
    batches,
    // NOTE: set only when there are jobs, so a configuration without provisioning compiles as before.
    ...(data.provision.length > 0 ? { provision: data.provision.map((p, i) => compileProvision(p, i, source, cwd)) } : {}),
  };
  return deepFreeze(compiled);
}

/** Adds `(account "<name>")` to schema issues inside an entry of `accounts` whose name is valid (DESIGN.md §11). */
function nameAccounts(issues: PathIssue[], raw: unknown): PathIssue[] {
  const accounts = (raw as { accounts?: unknown } | null)?.accounts;
  if (!Array.isArray(accounts)) return issues;
  return issues.map((issue) => {
    const [section, index, key] = issue.path;
    if (section !== 'accounts' || typeof index !== 'number' || key === 'name') return issue;
    const name = (accounts[index] as { name?: unknown } | null | undefined)?.name;
    if (typeof name !== 'string' || !ACCOUNT_NAME_PATTERN.test(name)) return issue;
    return { ...issue, message: `${issue.message} (account "${name}")` };
  });
}

/**
 * Validates a raw configuration and compiles it, or throws a ConfigError carrying every issue.
 * Shared by `load.ts` (with a YAML source map) and {@link compileConfigObject}.
 *
 * @param raw - the parsed document; safe integers as numbers, unsafe ones may be bigints.
 * @param source - positions and names for issues.
 * @param cwd - base directory of relative paths.
 * @param earlierIssues - issues found before validation (YAML warnings, duplicate keys), reported with the rest.
 * @throws ConfigError with all issues, sorted by position.
 */
export function validateAndCompile(
  raw: unknown,
  source: SourceMap,
  cwd: string,
  earlierIssues: readonly ConfigIssue[] = [],
): CompiledConfig {
  if (earlierIssues.length === 0 && raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    const rawBatches = (raw as { batches?: unknown }).batches;
    if (Array.isArray(rawBatches)) {
      const compiled = compileStreaming(raw as Record<string, unknown>, rawBatches, source, cwd);
      if (compiled !== null) return compiled;
    }
  }
  const parsed = configSchema.safeParse(raw, { reportInput: true });
  const issues = [
    ...(parsed.success ? [] : nameAccounts(fromZodIssues(parsed.error.issues), raw)),
    ...crossCheck(raw, (p) => source.describe(p)),
    ...checkRootSections(raw),
  ];
  if (issues.length > 0 || earlierIssues.length > 0 || !parsed.success) {
    throw new ConfigError(sortIssues([...earlierIssues, ...toConfigIssues(issues, source)]));
  }
  const rawBatches = (raw as { batches?: unknown[] }).batches ?? [];
  const prepared = prepare(parsed.data, source);
  return compileValid(parsed.data, prepared, parsed.data.batches.map((b, i) => compileBatch(b, rawBatches[i], i, prepared.ctx)), cwd);
}

/**
 * The success path at scale: the sections first, then each batch validated and compiled on its own, so the
 * validated copy of one entry is garbage as soon as it is compiled (instead of 100,000 of them at once).
 * Returns null at the first issue of any kind; the caller then validates the whole again to report every issue
 * in the usual order.
 */
function compileStreaming(raw: Record<string, unknown>, rawBatches: readonly unknown[], source: SourceMap, cwd: string): CompiledConfig | null {
  const top = configSchema.safeParse({ ...raw, batches: [] });
  if (!top.success) return null;
  if (crossCheck(raw, (p) => source.describe(p)).length > 0 || checkRootSections(raw).length > 0) return null;
  const prepared = prepare(top.data, source);
  const batches: BatchConfig[] = new Array<BatchConfig>(rawBatches.length);
  for (let i = 0; i < rawBatches.length; i += 1) {
    const entry = batchSchema.safeParse(rawBatches[i]);
    if (!entry.success) return null;
    batches[i] = compileBatch(entry.data, rawBatches[i], i, prepared.ctx);
  }
  return compileValid(top.data, prepared, batches, cwd);
}

/**
 * A compilation fed one batch entry at a time (src/config/incremental-load.ts): the sections (`head`, a raw
 * configuration whose `batches` is ignored) are validated once, then each entry on its own. Only for valid input:
 * any issue gives null, and the caller then takes the reporting path ({@link validateAndCompile}).
 */
export interface EntryCompiler {
  /**
   * Validates and compiles entry `index` (the per-entry cross-key rules included; duplicates are the caller's),
   * frozen; null when it has any issue.
   */
  entry(raw: unknown, index: number): BatchConfig | null;
  /** The whole configuration with these batches (each from {@link EntryCompiler.entry}). */
  finish(batches: BatchConfig[]): CompiledConfig;
}

/** Starts an {@link EntryCompiler} over the sections of `head`; null when they have any issue. */
export function startEntryCompiler(head: Record<string, unknown>, source: SourceMap, cwd: string): EntryCompiler | null {
  const sections = { ...head, batches: [] };
  const top = configSchema.safeParse(sections);
  if (!top.success) return null;
  if (crossCheck(sections, (p) => source.describe(p)).length > 0 || checkRootSections(sections).length > 0) return null;
  const prepared = prepare(top.data, source);
  // NOTE: the per-entry rules need the sections they inherit from (polling delays, account names) only.
  const context: Record<string, unknown> = {};
  if (Object.hasOwn(head, 'polling')) context.polling = head.polling;
  if (Object.hasOwn(head, 'accounts')) context.accounts = head.accounts;
  return {
    entry(raw, index) {
      const parsed = batchSchema.safeParse(raw);
      if (!parsed.success) return null;
      if (crossCheck({ ...context, batches: [raw] }, (p) => formatPath(p)).length > 0) return null;
      return deepFreeze(compileBatch(parsed.data, raw, index, prepared.ctx));
    },
    finish: (batches) => compileValid(top.data, prepared, batches, cwd),
  };
}

/**
 * Compiles a configuration given as a JavaScript object (for library users). Same rules and messages as the
 * YAML file; issues carry file `<object>`, line 0 and col 0, and BatchConfig.source is null.
 *
 * @example compileConfigObject({ alibaba: { regionId: 'cn-shanghai' }, batches: [{ applyId: '1295006', productKey: 'a1B' }] })
 * @throws ConfigError with every issue.
 */
export function compileConfigObject(raw: unknown, options: CompileOptions = {}): CompiledConfig {
  return validateAndCompile(raw, OBJECT_SOURCE, options.cwd ?? process.cwd());
}

/**
 * Validates and compiles one batch entry on its own, against inherited settings (for `wait`, which watches one
 * batch given by flags). Same schema, defaults and hashing as an entry of the file.
 *
 * @returns the batch, or the zod issues (paths relative to the entry, e.g. `['polling', 'timeout']`).
 */
export function compileSingleBatch(
  entry: unknown,
  inherited: Omit<BatchContext, 'source'>,
): { ok: true; batch: BatchConfig } | { ok: false; issues: PathIssue[] } {
  const parsed = batchSchema.safeParse(entry, { reportInput: true });
  if (!parsed.success) return { ok: false, issues: fromZodIssues(parsed.error.issues) };
  const issues = crossCheck({ batches: [entry] }, (p) => formatPath(p)).map((i) => ({ ...i, path: i.path.slice(2) }));
  if (issues.length > 0) return { ok: false, issues };
  return { ok: true, batch: deepFreeze(compileBatch(parsed.data, entry, 0, { ...inherited, source: OBJECT_SOURCE })) };
}
