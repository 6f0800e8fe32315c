/**
 * docs/operations.md states facts that live in the code: the Alibaba error table and what the daemon does with each
 * code, the daemon's own error codes, the metric names, the exit codes and the alert rules. These tests fail when the
 * code changes and the document does not.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

import { ERROR_CODE_PATTERNS, ERROR_CODE_TABLE, type CodeClass } from '../../../src/alibaba/error-codes.js';
import { EXIT } from '../../../src/main.js';
import { METRIC_NAMES } from '../../../src/ops/metrics.js';

import { codeBlocks, codeSpans, readRepoFile, ROOT, section, tableRows } from './markdown.js';

const doc = readRepoFile('docs/operations.md');

/** The "The daemon" column must start with the action the classification implies. */
function expectedAction(c: Pick<CodeClass, 'kind' | 'scope'>): RegExp {
  if (c.scope === 'attempt') return c.kind === 'throttled' ? /^Retry with backoff; halves the rate/ : /^Retry with backoff/;
  if (c.scope === 'batch') return /^Park the batch/;
  return /^Stop the daemon/;
}

describe('docs/operations.md: Alibaba error codes', () => {
  const rows = tableRows(section(doc, 'Alibaba error codes'));
  const exactRows = rows.filter((r) => r.length === 4 && !r[1]!.startsWith('`^'));
  const familyRows = rows.filter((r) => r.length === 4 && r[1]!.startsWith('`^'));

  it('finds both tables', () => {
    expect(exactRows.length).toBeGreaterThan(40);
    expect(familyRows.length).toBe(ERROR_CODE_PATTERNS.length);
  });

  it('lists every code of ERROR_CODE_TABLE once, with the action the daemon really takes', () => {
    const documented = new Map<string, string>();
    for (const [code, , action] of exactRows) {
      const [name] = codeSpans(code!);
      expect(name, `row ${code}`).toBeDefined();
      expect(documented.has(name!), `${name} documented twice`).toBe(false);
      documented.set(name!, action!);
    }
    for (const [code, cls] of Object.entries(ERROR_CODE_TABLE)) {
      expect(documented.has(code), `${code} is missing from the table`).toBe(true);
      expect(documented.get(code), code).toMatch(expectedAction(cls));
    }
    expect([...documented.keys()].filter((c) => !Object.hasOwn(ERROR_CODE_TABLE, c))).toEqual([]);
  });

  it('lists every pattern of ERROR_CODE_PATTERNS, in order, with its action', () => {
    ERROR_CODE_PATTERNS.forEach((p, i) => {
      const row = familyRows[i]!;
      expect(codeSpans(row[1]!)[0]).toBe(p.pattern.source);
      expect(row[2]).toMatch(expectedAction(p));
    });
  });

  it('describes the fallback for unknown codes as a retry', () => {
    expect(section(doc, 'Alibaba error codes')).toContain('unknown Alibaba error code; treating it as transient');
  });
});

describe("docs/operations.md: the daemon's own error codes", () => {
  /** Every `code: '...'` given to a DaemonError in src (the simulator's Alibaba codes and zod's `custom` aside). */
  function daemonCodes(): string[] {
    const codes = new Set<string>();
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const full = path.join(dir, name);
        if (statSync(full).isDirectory()) {
          if (name !== 'simulator') walk(full);
        } else if (name.endsWith('.ts')) {
          for (const m of readFileSync(full, 'utf8').matchAll(/\bcode: '([A-Za-z][A-Za-z0-9.]*)'/g)) codes.add(m[1]!);
        }
      }
    };
    walk(path.join(ROOT, 'src'));
    codes.delete('custom');
    codes.delete('EIO'); // a synthetic errno for a write that made no progress; documented with the store errors
    return [...codes].sort();
  }

  it('finds the codes in src', () => {
    const codes = daemonCodes();
    for (const code of ['CredentialsMissing', 'CredentialsConflict', 'LedgerLocked', 'ConfigInvalid', 'WebhookSecretMissing']) {
      expect(codes).toContain(code);
    }
  });

  it('mentions every one of them (those of ERROR_CODE_TABLE in the Alibaba table)', () => {
    const text = section(doc, "The daemon's own errors");
    const missing = daemonCodes().filter((code) => !Object.hasOwn(ERROR_CODE_TABLE, code) && !text.includes(`\`${code}\``));
    expect(missing).toEqual([]);
  });

  it('lists the store errno codes', () => {
    const text = section(doc, "The daemon's own errors");
    for (const code of ['EROFS', 'ENOSPC', 'EACCES', 'EIO']) expect(text).toContain(`\`${code}\``);
  });
});

describe('docs/operations.md: metrics', () => {
  const rows = tableRows(section(doc, 'Metrics'));
  const documented = rows.map((r) => codeSpans(r[0] ?? '')[0]);

  it('documents every metric of METRIC_NAMES in the table, and no other', () => {
    const names = Object.values(METRIC_NAMES);
    expect(names.filter((n) => !documented.includes(n))).toEqual([]);
    expect(documented.filter((n) => n === undefined || !(names as string[]).includes(n))).toEqual([]);
  });
});

describe('docs/operations.md: exit codes', () => {
  it('documents every exit code of main.ts, and no other', () => {
    const rows = tableRows(section(doc, 'Exit codes'));
    const documented = rows.map((r) => Number(codeSpans(r[0] ?? '')[0])).sort((a, b) => a - b);
    expect(documented).toEqual(Object.values(EXIT).sort((a, b) => a - b));
  });
});

describe('docs/operations.md: alerts', () => {
  const rules = codeBlocks(section(doc, 'Alerts'), 'yaml');

  it('holds one Prometheus rule file that parses', () => {
    expect(rules).toHaveLength(1);
    const parsed = parseYaml(rules[0]!) as { groups: { rules: { alert: string; expr: string; for: string }[] }[] };
    const alerts = parsed.groups.flatMap((g) => g.rules);
    expect(alerts.map((a) => a.alert)).toEqual(
      expect.arrayContaining(['IotBatchWatcherNoProgress', 'IotBatchWatcherThrottled', 'IotBatchWatcherSinkFailing']),
    );
    for (const a of alerts) expect(a.for).toMatch(/^\d+m$/);
  });

  it('only uses metric names the daemon exports', () => {
    const parsed = parseYaml(rules[0]!) as { groups: { rules: { expr: string }[] }[] };
    const known = new Set<string>(Object.values(METRIC_NAMES));
    for (const rule of parsed.groups.flatMap((g) => g.rules)) {
      for (const m of rule.expr.matchAll(/\bibw_[a-z_]+/g)) {
        const base = m[0].replace(/_(count|sum|bucket)$/, '');
        expect(known.has(base), `${m[0]} in ${rule.expr}`).toBe(true);
      }
    }
  });

  it('uses label values the daemon emits', () => {
    const text = rules[0]!;
    expect(text).toContain('state=~"pending|fetching"');
    expect(text).toContain('outcome="retry"');
    expect(text).toContain('outcome="ok"');
  });

  const promtool = (() => {
    try {
      execFileSync('promtool', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!promtool)('passes promtool check rules and fires as documented on synthetic series (when promtool is installed)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ibw-alerts-'));
    try {
      writeFileSync(path.join(dir, 'alerts.yaml'), rules[0]!);
      writeFileSync(path.join(dir, 'alerts-test.yaml'), ALERT_UNIT_TESTS);
      const check = execFileSync('promtool', ['check', 'rules', 'alerts.yaml'], { cwd: dir, encoding: 'utf8' });
      expect(check).toMatch(/SUCCESS: 4 rules found/);
      // promtool exits non-zero (and execFileSync throws) when an expected alert does not fire or an unexpected one does.
      const test = execFileSync('promtool', ['test', 'rules', 'alerts-test.yaml'], { cwd: dir, encoding: 'utf8' });
      expect(test).toMatch(/SUCCESS/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('docs/operations.md: links', () => {
  it('points at files that exist (benchmarks.md aside, which another document owns)', () => {
    const targets = [...doc.matchAll(/\]\((\.\.\/[^)#]+|[a-z-]+\.md)(?:#[^)]*)?\)/g)].map((m) => m[1]!);
    expect(targets.length).toBeGreaterThan(5);
    for (const t of new Set(targets)) {
      if (t === 'benchmarks.md') continue;
      expect(() => statSync(path.join(ROOT, 'docs', t)), t).not.toThrow();
    }
  });

  it('has an anchor for every in-page link', () => {
    const anchors = new Set(
      [...doc.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
        m[1]!
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    for (const m of doc.matchAll(/\]\(#([^)]+)\)/g)) expect(anchors.has(m[1]!), m[1]).toBe(true);
  });
});

/**
 * promtool unit tests of the documented alerts: instance a has pending work and no settlement (fires), b settles
 * (silent), c is stuck in `fetching` (fires both); sustained throttling fires, a single burst does not; a webhook that
 * only retries fires even without any `ok` series, an events file that also succeeds does not.
 */
const ALERT_UNIT_TESTS = `rule_files: [alerts.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - { series: 'ibw_batches{instance="a",state="pending"}', values: '3x300' }
      - { series: 'ibw_batches{instance="a",state="fetching"}', values: '0x300' }
      - { series: 'ibw_batch_settle_seconds_count{instance="a",outcome="created"}', values: '0x300' }
      - { series: 'ibw_batches{instance="b",state="pending"}', values: '3x300' }
      - { series: 'ibw_batches{instance="b",state="fetching"}', values: '0x300' }
      - { series: 'ibw_batch_settle_seconds_count{instance="b",outcome="created"}', values: '0+1x300' }
      - { series: 'ibw_batches{instance="c",state="fetching"}', values: '1x300' }
    alert_rule_test:
      - eval_time: 3h
        alertname: IotBatchWatcherNoProgress
        exp_alerts:
          - exp_labels: { instance: a, severity: warning }
            exp_annotations: { summary: "iot-batch-watcher: batches pending, none settled for 2h" }
          - exp_labels: { instance: c, severity: warning }
            exp_annotations: { summary: "iot-batch-watcher: batches pending, none settled for 2h" }
      - eval_time: 3h
        alertname: IotBatchWatcherFetchStuck
        exp_alerts:
          - exp_labels: { instance: c, severity: warning }
            exp_annotations: { summary: "iot-batch-watcher: a batch is stuck listing devices or writing its result" }
  - interval: 1m
    input_series:
      - { series: 'ibw_throttled_total{instance="a",action="QueryBatchRegisterDeviceStatus"}', values: '0+2x60' }
      - { series: 'ibw_throttled_total{instance="b",action="QueryBatchRegisterDeviceStatus"}', values: '0 5 5x58' }
    alert_rule_test:
      - eval_time: 30m
        alertname: IotBatchWatcherThrottled
        exp_alerts:
          - exp_labels: { instance: a, severity: warning }
            exp_annotations: { summary: "iot-batch-watcher: throttled by Alibaba Cloud for 15m" }
  - interval: 1m
    input_series:
      - { series: 'ibw_sink_deliveries_total{instance="a",sink="webhook",outcome="retry"}', values: '0+3x60' }
      - { series: 'ibw_sink_deliveries_total{instance="a",sink="events_file",outcome="retry"}', values: '0+1x60' }
      - { series: 'ibw_sink_deliveries_total{instance="a",sink="events_file",outcome="ok"}', values: '0+5x60' }
    alert_rule_test:
      - eval_time: 30m
        alertname: IotBatchWatcherSinkFailing
        exp_alerts:
          - exp_labels: { instance: a, sink: webhook, severity: critical }
            exp_annotations: { summary: "iot-batch-watcher: sink webhook failing for 10m" }
`;
