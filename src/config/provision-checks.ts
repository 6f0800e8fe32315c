/**
 * Cross-key rules of `provision` entries (DESIGN.md §13): exactly one of `devices` and `count`, unique job
 * names, no `__proto__` label. Like cross-checks.ts they run on the raw input, so every issue is reported at once.
 */

import type { ConfigPath, DescribeLocation, PathIssue } from './cross-checks.js';
import { PROVISION_NAME_PATTERN } from './schema.js';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The issues of the `provision` list that the schema cannot see.
 *
 * @param raw - the whole configuration as parsed, not yet validated.
 * @param where - names another location for "already used at provision[0] (line 12)".
 */
export function crossCheckProvision(raw: unknown, where: DescribeLocation): PathIssue[] {
  const issues: PathIssue[] = [];
  const jobs = isRecord(raw) ? raw.provision : undefined;
  if (!Array.isArray(jobs)) return issues;
  const seen = new Map<string, number>();
  jobs.forEach((entry: unknown, index) => {
    if (!isRecord(entry)) return;
    const at: ConfigPath = ['provision', index];
    const hasDevices = Object.hasOwn(entry, 'devices') && entry.devices !== undefined;
    const hasCount = Object.hasOwn(entry, 'count') && entry.count !== undefined;
    if (hasDevices && hasCount) {
      issues.push({
        path: [...at, 'count'],
        anchor: 'key',
        message: 'expected either devices or count, got both: a job submits the names of a file or a number of random names, not both',
      });
    } else if (!hasDevices && !hasCount) {
      issues.push({ path: at, anchor: 'value', message: 'expected devices (a device file) or count (a number of devices), got neither' });
    }
    const labels = entry.labels;
    if (isRecord(labels) && Object.hasOwn(labels, '__proto__')) {
      issues.push({
        path: [...at, 'labels', '__proto__'],
        anchor: 'key',
        message: 'expected a label name other than __proto__, which cannot be kept in an object',
      });
    }
    const name = entry.name;
    if (typeof name !== 'string' || !PROVISION_NAME_PATTERN.test(name)) return;
    // NOTE: compared without case: the name becomes a file name, and two names that differ only in case would
    // share one result file on a case-insensitive file system.
    const key = name.toLowerCase();
    const first = seen.get(key);
    if (first === undefined) seen.set(key, index);
    else {
      issues.push({
        path: [...at, 'name'],
        anchor: 'value',
        message: `duplicate provisioning job "${name}": the name is already used at ${where(['provision', first])} (names are compared without case)`,
      });
    }
  });
  return issues;
}
