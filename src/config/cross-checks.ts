/**
 * Configuration rules that involve more than one key. They run on the raw input next to the zod schema
 * (which skips object refinements once a child failed), so every issue is reported in one pass. Each rule
 * looks only at values that are valid on their own, so nothing is reported twice.
 */

import { formatDuration, tryParseDuration } from './duration.js';
import { crossCheckProvision } from './provision-checks.js';
import { describeValue as describe, expectedGot } from './describe.js';
import {
  ACCOUNT_NAME_PATTERN,
  APPLY_ID_PATTERN,
  DEFAULT_ACCOUNT,
  PRODUCT_KEY_PATTERN,
  RAW_DEFAULTS,
  batchSchema,
  positiveDurationSchema,
} from './schema.js';

/** A key path as zod reports it: `['batches', 1, 'polling', 'maxDelay']`. */
export type ConfigPath = readonly (string | number)[];

/** Where an issue points in the source: at the value, at the key, or at the mapping that holds the key. */
export type IssueAnchor = 'value' | 'key' | 'parent';

/** An issue before it has a file position. */
export interface PathIssue {
  path: ConfigPath;
  message: string;
  anchor: IssueAnchor;
}

/** Describes where a path is, for messages that refer to another place: `batches[0] (line 12)`. */
export type DescribeLocation = (path: ConfigPath) => string;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function field(value: unknown, key: string): unknown {
  return isRecord(value) && Object.hasOwn(value, key) ? value[key] : undefined;
}

/** The milliseconds of a valid positive duration, or null when absent or invalid. */
function validDuration(value: unknown): number | null {
  if (value === undefined || !positiveDurationSchema.safeParse(value).success) return null;
  const parsed = tryParseDuration(value);
  return parsed.ok ? parsed.ms : null;
}

interface Effective {
  ms: number;
  /** Where the value came from, for the message: `polling.maxDelay` or `the default`. */
  from: string;
}

/** Formats `path` as in ConfigIssue.path. */
export function formatPath(path: ConfigPath): string {
  let out = '';
  for (const whole of path) {
    // NOTE: a key can be as long as the file; a message shows its first 60 characters.
    const segment = typeof whole === 'string' && whole.length > 60 ? `${whole.slice(0, 60)}…` : whole;
    if (typeof segment === 'number') out += `[${segment}]`;
    // NOTE: a key that is not a plain word (empty, spaces, dots) is shown quoted, so the path never looks blank.
    else if (!/^[A-Za-z_$][\w$-]*$/.test(segment)) out += `[${JSON.stringify(segment)}]`;
    else out += out === '' ? segment : `.${segment}`;
  }
  return out;
}

/**
 * Checks initialDelay ≤ maxDelay where at least one of them is set at `prefix` (a polling mapping), taking the
 * other from `inherited`.
 */
function checkDelays(
  polling: unknown,
  prefix: ConfigPath,
  inherited: { initialDelay: Effective | null; maxDelay: Effective | null },
  issues: PathIssue[],
): void {
  const ownInitial = field(polling, 'initialDelay');
  const ownMax = field(polling, 'maxDelay');
  const initialMs = ownInitial === undefined ? inherited.initialDelay?.ms : validDuration(ownInitial);
  const maxMs = ownMax === undefined ? inherited.maxDelay?.ms : validDuration(ownMax);
  if (initialMs === undefined || initialMs === null || maxMs === undefined || maxMs === null) return;
  if (initialMs <= maxMs) return;
  if (ownInitial !== undefined) {
    const maxFrom = ownMax !== undefined ? formatPath([...prefix, 'maxDelay']) : (inherited.maxDelay?.from ?? '');
    issues.push({
      path: [...prefix, 'initialDelay'],
      anchor: 'value',
      message: `expected a duration ≤ maxDelay (${formatDuration(maxMs)}, from ${maxFrom}), got ${describe(ownInitial)}`,
    });
  } else if (ownMax !== undefined) {
    issues.push({
      path: [...prefix, 'maxDelay'],
      anchor: 'value',
      message: `expected a duration ≥ initialDelay (${formatDuration(initialMs)}, from ${inherited.initialDelay?.from ?? ''}), got ${describe(ownMax)}`,
    });
  }
}

function effective(polling: unknown, key: 'initialDelay' | 'maxDelay', fallback: Effective): Effective | null {
  const value = field(polling, key);
  if (value === undefined) return fallback;
  const ms = validDuration(value);
  return ms === null ? null : { ms, from: `polling.${key}` };
}

/**
 * The identity of a batch entry, `productKey/applyId` (prefixed `account:` for an account other than
 * `default`), when both are valid; else null.
 */
export function batchIdentity(entry: unknown, account: string = DEFAULT_ACCOUNT): string | null {
  const applyId = field(entry, 'applyId');
  const productKey = field(entry, 'productKey');
  // NOTE: the common cases are decided without zod (two schema runs per entry cost seconds at 100,000 entries);
  // anything else goes through the schema, which stays the rule.
  const applyOk =
    (typeof applyId === 'string' && applyId.length <= 18 && APPLY_ID_PATTERN.test(applyId)) ||
    (typeof applyId === 'number' && Number.isSafeInteger(applyId) && applyId >= 1) ||
    batchSchema.shape.applyId.safeParse(applyId).success;
  const productOk = (typeof productKey === 'string' && PRODUCT_KEY_PATTERN.test(productKey)) || batchSchema.shape.productKey.safeParse(productKey).success;
  if (!applyOk || !productOk) return null;
  const key = `${String(productKey)}/${String(applyId)}`;
  return account === DEFAULT_ACCOUNT ? key : `${account}:${key}`;
}

/** The valid account names of `accounts`, in order (null without an `accounts` list). */
function accountNames(raw: unknown): string[] | null {
  const accounts = field(raw, 'accounts');
  if (!Array.isArray(accounts)) return null;
  const names: string[] = [];
  for (const entry of accounts) {
    const name = field(entry, 'name');
    if (typeof name === 'string' && ACCOUNT_NAME_PATTERN.test(name)) names.push(name);
  }
  return names;
}

/** Rules of `accounts` (DESIGN.md §11): unique names, credentials that say what to read. */
function checkAccounts(raw: unknown, where: DescribeLocation, issues: PathIssue[]): void {
  const accounts = field(raw, 'accounts');
  if (!Array.isArray(accounts)) return;
  const seen = new Map<string, number>();
  accounts.forEach((entry: unknown, index) => {
    if (!isRecord(entry)) return;
    const name = field(entry, 'name');
    const named = typeof name === 'string' && ACCOUNT_NAME_PATTERN.test(name) ? name : null;
    const label = named === null ? `accounts[${index}]` : `account "${named}"`;
    if (named !== null) {
      const first = seen.get(named);
      if (first === undefined) seen.set(named, index);
      else {
        issues.push({
          path: ['accounts', index, 'name'],
          anchor: 'value',
          message: `duplicate account "${named}": the name is already declared at ${where(['accounts', first])}`,
        });
      }
    }
    const credentials = field(entry, 'credentials');
    if (!isRecord(credentials)) return;
    const mode = field(credentials, 'mode');
    const envKeys = ['accessKeyIdEnv', 'accessKeySecretEnv', 'securityTokenEnv'].filter((k) => field(credentials, k) !== undefined);
    if (mode === 'chain') {
      for (const key of envKeys) {
        issues.push({
          path: ['accounts', index, 'credentials', key],
          anchor: 'key',
          message: `expected no ${key} with mode: chain (${label} reads its credentials from the default chain), got ${describe(field(credentials, key))}`,
        });
      }
    } else if (mode === undefined || mode === 'env') {
      for (const key of ['accessKeyIdEnv', 'accessKeySecretEnv']) {
        if (field(credentials, key) !== undefined) continue;
        issues.push({
          path: ['accounts', index, 'credentials', key],
          anchor: 'parent',
          message: `${expectedGot('the name of an environment variable', undefined)}: ${label} reads its credentials from variables (or set mode: chain)`,
        });
      }
    }
  });
}

/**
 * The rules of a whole file's sections (not of an entry checked on its own): without `accounts`, `alibaba` is the
 * one account and required; beside `accounts` it is optional, and then every account names its own region.
 */
export function checkRootSections(raw: unknown): PathIssue[] {
  const issues: PathIssue[] = [];
  if (!isRecord(raw)) return issues;
  const accounts = field(raw, 'accounts');
  if (field(raw, 'alibaba') !== undefined) return issues;
  if (accounts === undefined) {
    issues.push({ path: ['alibaba'], anchor: 'parent', message: expectedGot('a mapping', undefined) });
  } else if (Array.isArray(accounts)) {
    accounts.forEach((entry: unknown, index) => {
      if (!isRecord(entry) || field(entry, 'regionId') !== undefined) return;
      const name = field(entry, 'name');
      const label = typeof name === 'string' ? `account "${name}"` : `accounts[${index}]`;
      issues.push({
        path: ['accounts', index, 'regionId'],
        anchor: 'parent',
        message: `${expectedGot('a region such as cn-shanghai', undefined)}: ${label} has no alibaba section to inherit one from`,
      });
    });
  }
  return issues;
}

/**
 * Runs every cross-key rule on the raw configuration.
 *
 * @param raw - the configuration as parsed from YAML (or given by a library user), not yet validated.
 * @param where - describes another location for messages such as "already declared at batches[0] (line 12)".
 */
export function crossCheck(raw: unknown, where: DescribeLocation): PathIssue[] {
  const issues: PathIssue[] = crossCheckProvision(raw, where);
  const defaults = RAW_DEFAULTS.polling;
  const defaultInitial: Effective = { ms: tryParseDurationMs(defaults.initialDelay), from: 'the default' };
  const defaultMax: Effective = { ms: tryParseDurationMs(defaults.maxDelay), from: 'the default' };

  const topPolling = field(raw, 'polling');
  checkDelays(topPolling, ['polling'], { initialDelay: defaultInitial, maxDelay: defaultMax }, issues);
  const inherited = {
    initialDelay: effective(topPolling, 'initialDelay', defaultInitial),
    maxDelay: effective(topPolling, 'maxDelay', defaultMax),
  };

  checkAccounts(raw, where, issues);
  const names = accountNames(raw);
  const firstAccount = names === null ? DEFAULT_ACCOUNT : (names[0] ?? null);

  const batches = field(raw, 'batches');
  if (!Array.isArray(batches)) return issues;
  const seen = new Map<string, number>();
  batches.forEach((entry: unknown, index) => {
    if (!isRecord(entry)) return;
    const ownAccount = field(entry, 'account');
    let account: string | null = firstAccount;
    if (typeof ownAccount === 'string' && ACCOUNT_NAME_PATTERN.test(ownAccount)) {
      const known = names === null ? [DEFAULT_ACCOUNT] : names;
      account = ownAccount;
      if (!known.includes(ownAccount)) {
        account = null;
        issues.push({
          path: ['batches', index, 'account'],
          anchor: 'value',
          message:
            names === null
              ? `unknown account "${ownAccount}": without an accounts section the only account is "${DEFAULT_ACCOUNT}"`
              : `unknown account "${ownAccount}", expected one of: ${names.map((n) => `"${n}"`).join(', ')}`,
        });
      }
    } else if (ownAccount !== undefined) {
      account = null;
    }
    const polling = field(entry, 'polling');
    if (isRecord(polling)) checkDelays(polling, ['batches', index, 'polling'], inherited, issues);

    const labels = field(entry, 'labels');
    if (isRecord(labels) && Object.hasOwn(labels, '__proto__')) {
      issues.push({
        path: ['batches', index, 'labels', '__proto__'],
        anchor: 'key',
        message: 'expected a label name other than __proto__, which cannot be kept in an object',
      });
    }

    if (field(entry, 'register') === true && field(entry, 'until') === 'checked') {
      issues.push({
        path: ['batches', index, 'register'],
        anchor: 'value',
        message:
          'expected register: false with until: checked, got `true` (boolean): a batch watched until checked ' +
          'stops at CHECK_SUCCESS, before any registration, so it cannot also register',
      });
    }

    const identity = account === null ? null : batchIdentity(entry, account);
    if (identity === null) return;
    const first = seen.get(identity);
    if (first === undefined) {
      seen.set(identity, index);
    } else {
      issues.push({
        path: ['batches', index],
        anchor: 'value',
        message: `duplicate batch ${identity}: the same ${account === DEFAULT_ACCOUNT ? '' : 'account, '}productKey and applyId are already declared at ${where(['batches', first])}`,
      });
    }
  });
  return issues;
}

function tryParseDurationMs(value: string): number {
  const parsed = tryParseDuration(value);
  if (!parsed.ok) throw new Error(`bad built-in default ${value}`);
  return parsed.ms;
}
