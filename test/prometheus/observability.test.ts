/**
 * config/observability/ against a real Prometheus (DESIGN.md §14): Debian's `prometheus` scrapes a daemon started
 * through the CLI on the built-in simulator (both child processes), every second, while a scenario runs:
 * batches settle with every kind of outcome and one stays pending, the simulator throttles status polls, the
 * webhook fails, then recovers and refuses one batch's events for good (dead letters), and the configuration is
 * edited badly, then well. The daemon protects /metrics with `http.auth`; Prometheus scrapes it with the token.
 *
 * It proves that every expression of the Grafana dashboard returns data through the HTTP API (with the template
 * variables substituted, once without and once with an `account` label on the series), that the rule file is valid
 * (`promtool check rules`) and healthy when Prometheus evaluates it on the live series, that the alerts whose
 * conditions the scenario creates go pending or firing live, and that every alert fires in a scenario made for it
 * (`promtool test rules test/prometheus/alerts.test.yaml`).
 *
 * `npm run test:prometheus` (not part of `npm test`: it needs the `prometheus` package); `.ci/run` installs the
 * package when it is missing. Without it the suite fails; it never skips.
 */
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

import { METRIC_NAMES } from '../../src/ops/metrics.js';
import { type Child, REPO, runCli, SIM_ENV } from '../helpers/child.js';
import { codeBlocks, section } from '../unit/docs/markdown.js';

import { allPanels, dashboardExprs, parseLabelValues, readDashboard, substitute, variableQuery } from './dashboard.js';
import { freePort, type PrometheusHandle, requireBinary, type Series, startPrometheus, until } from './prometheus.js';

const OBS = resolve(REPO, 'config/observability');
const RULES_FILE = join(OBS, 'alerts.yaml');
const DASHBOARD_FILE = join(OBS, 'grafana-dashboard.json');
const ALERT_TESTS_FILE = resolve(REPO, 'test/prometheus/alerts.test.yaml');
const JOB = 'iot-batch-watcher';
/** A second scrape job of the same daemon whose series carry `account="fleet-cn"`, as they will with accounts (§11). */
const ACCOUNT_JOB = 'iot-batch-watcher-accounts';
const ACCOUNT = 'fleet-cn';
const SECRET = 'whsec-prometheus-suite-0123456789';
/** The ops server's bearer token (`http.auth` with `metrics: true`): Prometheus sends it from a file. */
const TOKEN = 'ops-token-prometheus-suite-51c7';
/** A scrape job without the token: its target must be down with a 401. */
const NO_TOKEN_JOB = 'iot-batch-watcher-no-token';
/** The batch whose events the webhook refuses for good once it recovers. */
const DEAD_LETTER_APPLY_ID = '7300006';

interface RuleFile {
  groups: { name: string; rules: { alert: string; expr: string; for?: string; labels?: Record<string, string> }[] }[];
}
const rules = parseYaml(readFileSync(RULES_FILE, 'utf8')) as RuleFile;
const alertNames = rules.groups.flatMap((g) => g.rules.map((r) => r.alert));

const SCENARIO = `# Simulated milliseconds at --time-scale 2: every batch settles within a few seconds, after Prometheus scrapes.
batches:
  - { applyId: "7300001", productKey: a1SimProduct1, mode: custom, deviceNames: [p-0001, p-0002, p-0003], registered: true, checkMs: 4000, createMs: 6000 }
  - { applyId: "7300002", productKey: a1SimProduct1, mode: custom, deviceNames: [p-0004, ab], outcome: check_failed, checkMs: 5000 }
  - { applyId: "7300003", productKey: a1SimProduct2, mode: custom, deviceNames: [q-0001, q-0002, q-0003], registered: true, outcome: partial, failNames: [q-0002], checkMs: 3000, createMs: 7000 }
  - { applyId: "7300004", productKey: a1SimProduct2, mode: custom, deviceNames: [r-0001, r-0002], registered: false, checkMs: 4000, createMs: 4000 }
  - { applyId: "7300005", productKey: a1SimProduct1, mode: random, count: 4, createMs: 8000 }
  - { applyId: "${DEAD_LETTER_APPLY_ID}", productKey: a1SimProduct1, mode: random, count: 2, createMs: 6000 }
  - { applyId: "7300007", productKey: a1SimProduct2, mode: random, count: 2, createMs: 4000 }
  - { applyId: "7300009", productKey: a1SimProduct2, mode: random, count: 1, outcome: never }
`;

function daemonConfig(dir: string, simUrl: string, daemonPort: number, webhookUrl: string, extra: string[] = []): string {
  return [
    `alibaba: { regionId: cn-shanghai, endpoint: "${simUrl}" }`,
    'polling: { initialDelay: 200ms, maxDelay: 1s, awaitingRegistrationDelay: 500ms }',
    'rateLimit: { statusQps: 5, pageQps: 5, concurrency: 4 }',
    `state: { dir: ${join(dir, 'state')} }`,
    `output: { resultsDir: ${join(dir, 'results')}, eventsFile: ${join(dir, 'events.jsonl')}, webhook: { url: "${webhookUrl}", timeout: 2s } }`,
    `http: { listen: "127.0.0.1:${daemonPort}", auth: { metrics: true } }`,
    // One small provisioning job (DESIGN.md §13), for ibw_provision_devices.
    `provision: [{ name: line-1, productKey: a1SimProduct1, devices: ${join(dir, 'line-1.txt')}, chunkSize: 10 }]`,
    'batches:',
    '  - { applyId: "7300001", productKey: a1SimProduct1, name: created }',
    '  - { applyId: "7300002", productKey: a1SimProduct1, name: check-failed }',
    '  - { applyId: "7300003", productKey: a1SimProduct2, name: partial }',
    '  - { applyId: "7300004", productKey: a1SimProduct2, name: register, register: true }',
    '  - { applyId: "7300005", productKey: a1SimProduct1, name: random }',
    `  - { applyId: "${DEAD_LETTER_APPLY_ID}", productKey: a1SimProduct1, name: dead-letter }`,
    '  - { applyId: "7300009", productKey: a1SimProduct2, name: never }',
    ...extra,
    '',
  ].join('\n');
}

interface AlertState {
  labels: Record<string, string>;
  state: 'pending' | 'firing' | 'inactive';
}

describe('config/observability on a real Prometheus scraping a running daemon', () => {
  let dir = '';
  let prom: PrometheusHandle | null = null;
  let sim: Child | null = null;
  let daemon: Child | null = null;
  let webhook: Server | null = null;
  let startSec = 0;
  /** Alerts seen pending or firing during the scenario, by name, with the labels of the first sighting. */
  const seenAlerts = new Map<string, AlertState>();

  /** The first active alert `name` whose labels match (`undefined`: the label is absent, i.e. the unlabelled job). */
  async function activeAlert(name: string, match: Record<string, string | undefined> = {}): Promise<AlertState | undefined> {
    const data = await prom!.api<{ alerts: AlertState[] }>('/api/v1/alerts');
    const hit = data.alerts.find(
      (a) => a.labels.alertname === name && a.state !== 'inactive' && Object.entries(match).every(([k, v]) => a.labels[k] === v),
    );
    if (hit && !seenAlerts.has(name)) seenAlerts.set(name, hit);
    return hit;
  }

  beforeAll(async () => {
    requireBinary('prometheus');
    requireBinary('promtool');
    dir = await mkdtemp(join(tmpdir(), 'ibw-prometheus-'));

    // The webhook: 503 (retry) until `accepting`, then 200, but 400 (dead letter) for one batch's events.
    let accepting = false;
    webhook = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const event = JSON.parse(Buffer.concat(chunks).toString()) as { applyId?: string };
        if (!accepting) res.writeHead(503).end('down');
        else if (event.applyId === DEAD_LETTER_APPLY_ID) res.writeHead(400).end('refused');
        else res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => webhook!.listen(0, '127.0.0.1', () => r()));
    const webhookUrl = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/hook`;

    // Prometheus first, so it scrapes the daemon from its first second on.
    const daemonPort = await freePort();
    const promPort = await freePort();
    const promConfig = join(dir, 'prometheus.yml');
    const tokenFile = join(dir, 'ops-token');
    await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const authorization = `    authorization: { type: Bearer, credentials_file: "${tokenFile}" }`;
    await writeFile(
      promConfig,
      [
        'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }',
        `rule_files: ["${RULES_FILE}"]`,
        'scrape_configs:',
        `  - job_name: ${JOB}`,
        authorization,
        `    static_configs: [{ targets: ["127.0.0.1:${daemonPort}"] }]`,
        `  - job_name: ${ACCOUNT_JOB}`,
        authorization,
        `    static_configs: [{ targets: ["127.0.0.1:${daemonPort}"], labels: { account: ${ACCOUNT} } }]`,
        `  - job_name: ${NO_TOKEN_JOB}`,
        `    static_configs: [{ targets: ["127.0.0.1:${daemonPort}"] }]`,
        '',
      ].join('\n'),
    );
    prom = await startPrometheus(promConfig, dir, promPort);
    startSec = Math.floor(Date.now() / 1000);

    // The daemon next, then the simulator once Prometheus scrapes the daemon: the batches' clocks start only then, so
    // no batch can settle before the first scrape (a counter's first sample would hide that increase). Until the
    // simulator listens, polls fail as transient connection errors and are retried.
    const simPort = await freePort();
    const simUrl = `http://127.0.0.1:${simPort}`;
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(join(dir, 'line-1.txt'), 'prov-0001\nprov-0002\n');
    await writeFile(configFile, daemonConfig(dir, simUrl, daemonPort, webhookUrl));
    daemon = runCli(['run', '--config', configFile], { ...SIM_ENV, IBW_WEBHOOK_SECRET: SECRET, IBW_HTTP_TOKEN_FILE: tokenFile });
    await daemon.waitFor(/ops endpoints listening/);
    await until('Prometheus scraping the daemon', async () => {
      const r = await prom!.query(`up{job="${JOB}"} == 1`);
      return r.length > 0 ? r : undefined;
    });
    const scenarioFile = join(dir, 'scenario.yaml');
    await writeFile(scenarioFile, SCENARIO);
    sim = runCli(['simulator', '--port', String(simPort), '--scenario', scenarioFile, '--time-scale', '2', '--qps', 'QueryBatchRegisterDeviceStatus=2']);
    await sim.waitFor(/simulator listening on http:\/\/127\.0\.0\.1:\d+/);

    // 1. The webhook fails and the simulator throttles: both alerts go pending.
    await until('IotBatchWatcherSinkFailing pending for the webhook', () => activeAlert('IotBatchWatcherSinkFailing', { sink: 'webhook', account: undefined }));
    await until('IotBatchWatcherThrottled pending', () => activeAlert('IotBatchWatcherThrottled', { account: undefined }));
    // The webhook recovers at once (the outbox's backoff grows to a minute), and refuses one batch's events for good.
    accepting = true;

    // 2. A bad edit is refused (the old configuration keeps running); then a good one adds a batch.
    await writeFile(configFile, `${daemonConfig(dir, simUrl, daemonPort, webhookUrl)}polling: { initialDelay: soon }\n`);
    await daemon.waitFor(/new configuration is invalid/);
    await until('IotBatchWatcherConfigRefused pending', () => activeAlert('IotBatchWatcherConfigRefused', { account: undefined }));
    await writeFile(configFile, daemonConfig(dir, simUrl, daemonPort, webhookUrl, ['  - { applyId: "7300007", productKey: a1SimProduct2, name: added }']));
    await daemon.waitFor(/configuration reloaded/);

    // 3. The dead letters of the refused batch fire their alert (it has no `for`).
    await until('IotBatchWatcherDeadLetters firing', async () => {
      const a = await activeAlert('IotBatchWatcherDeadLetters', { sink: 'webhook', account: undefined });
      return a?.state === 'firing' ? a : undefined;
    });
    // 4. Every batch but the `never` one settled, and Prometheus saw it: the seven of the configuration other than
    // `never`, and the provisioning job's batch, which is in the ledger too (so "seven settled" alone can leave one
    // still pending: CI saw Pending = 2).
    await until('every batch but one settled in Prometheus', async () => {
      const r = await prom!.query(
        `sum(ibw_batches{job="${JOB}",state="settled"}) >= 7 and on () sum(ibw_batches{job="${JOB}",state=~"pending|fetching"}) == 1`,
      );
      return r.length > 0 ? r : undefined;
    }, 60_000);
    await until('webhook deliveries succeeding', async () => {
      const r = await prom!.query(`sum(rate(ibw_sink_deliveries_total{job="${JOB}",sink="webhook",outcome="ok"}[5s])) > 0`);
      return r.length > 0 ? r : undefined;
    });
  }, 150_000);

  afterAll(async () => {
    for (const child of [daemon, sim]) {
      if (child && child.proc.exitCode === null) {
        child.proc.kill('SIGTERM');
        await child.exited;
      }
    }
    await prom?.stop();
    webhook?.closeAllConnections();
    await new Promise<void>((r) => (webhook ? webhook.close(() => r()) : r()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('the rule file', () => {
    it('passes promtool check rules', () => {
      const out = execFileSync('promtool', ['check', 'rules', RULES_FILE], { encoding: 'utf8' });
      expect(out).toContain(`SUCCESS: ${alertNames.length} rules found`);
      expect(alertNames.length).toBeGreaterThanOrEqual(8);
    });

    it('fires every alert in a scenario made for it (promtool test rules)', () => {
      const tests = parseYaml(readFileSync(ALERT_TESTS_FILE, 'utf8')) as {
        tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
      };
      const fired = new Set(tests.tests.flatMap((t) => t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
      expect([...fired].sort()).toEqual([...alertNames].sort());
      // promtool exits non-zero (execFileSync throws) when an expected alert does not fire or an unexpected one does.
      const out = execFileSync('promtool', ['test', 'rules', ALERT_TESTS_FILE], { encoding: 'utf8' });
      expect(out).toContain('SUCCESS');
    });

    it('is loaded by Prometheus and every rule evaluates without error on the live series', async () => {
      const data = await prom!.api<{ groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] }>('/api/v1/rules');
      const loaded = data.groups.flatMap((g) => g.rules);
      expect(loaded.map((r) => r.name).sort()).toEqual([...alertNames].sort());
      expect(loaded.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
    });

    it('went pending or firing live when the scenario created its condition', () => {
      for (const name of ['IotBatchWatcherSinkFailing', 'IotBatchWatcherThrottled', 'IotBatchWatcherConfigRefused', 'IotBatchWatcherDeadLetters']) {
        expect(seenAlerts.get(name)?.state, name).toMatch(/^(pending|firing)$/);
      }
      expect(seenAlerts.get('IotBatchWatcherSinkFailing')!.labels.sink).toBe('webhook');
    });

    it('only uses metrics the daemon exports', async () => {
      const exported = new Set((await prom!.api<string[]>('/api/v1/label/__name__/values', { 'match[]': `{job="${JOB}"}` })));
      for (const rule of rules.groups.flatMap((g) => g.rules)) {
        for (const m of rule.expr.matchAll(/\bibw_[a-z0-9_]+/g)) expect(exported.has(m[0]), `${rule.alert}: ${m[0]}`).toBe(true);
      }
    });

    it('is what docs/operations.md shows and names', () => {
      const doc = readFileSync(resolve(REPO, 'docs/operations.md'), 'utf8');
      const blocks = codeBlocks(section(doc, 'Alerts'), 'yaml');
      expect(blocks).toHaveLength(1);
      const shown = parseYaml(blocks[0]!) as RuleFile;
      expect(shown.groups).toEqual([rules.groups[0]]);
      for (const name of alertNames) expect(section(doc, 'Alerts'), name).toContain(name);
    });
  });

  it('scrapes /metrics with the bearer token of http.auth, and gets 401 without it', async () => {
    const data = await prom!.api<{ activeTargets: { labels: { job: string }; health: string; lastError: string }[] }>('/api/v1/targets');
    const byJob = new Map(data.activeTargets.map((t) => [t.labels.job, t]));
    expect(byJob.get(JOB)?.health).toBe('up');
    expect(byJob.get(ACCOUNT_JOB)?.health).toBe('up');
    expect(byJob.get(NO_TOKEN_JOB)?.health).toBe('down');
    expect(byJob.get(NO_TOKEN_JOB)?.lastError).toMatch(/401/);
    expect(daemon!.stdout.join('\n')).not.toContain(TOKEN);
  });

  describe('the Grafana dashboard', () => {
    const dashboard = readDashboard(DASHBOARD_FILE);
    const exprs = dashboardExprs(dashboard);
    const variables = dashboard.templating.list;

    /** Grafana's built-ins as it computes them for a 1 s scrape interval; the selectors' variables as "All" or one value. */
    function values(job: string, account: string): Record<string, string> {
      const rangeSec = Math.ceil(Date.now() / 1000 - startSec) + 5;
      return { __rate_interval: '4s', __interval: '1s', __range: `${rangeSec}s`, job, instance: '.*', account };
    }

    it('is well formed: unique panel ids, a grid position and the datasource variable on every panel and target', () => {
      const panels = allPanels(dashboard);
      expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
      expect(dashboard.uid).toBe('iot-batch-watcher');
      for (const p of panels) {
        expect(p.gridPos, p.title).toBeDefined();
        if (p.type === 'row') continue;
        expect(p.datasource?.uid, p.title).toBe('${datasource}');
        expect(p.targets?.length, p.title).toBeGreaterThan(0);
        for (const t of p.targets!) expect(t.datasource?.uid, `${p.title} ${t.refId}`).toBe('${datasource}');
      }
      expect(variables.map((v) => v.name)).toEqual(['datasource', 'job', 'instance', 'account']);
      expect(exprs.length).toBeGreaterThan(20);
    });

    it('covers every metric of DESIGN.md §8', () => {
      const text = exprs.map((e) => e.expr).join('\n');
      for (const name of Object.values(METRIC_NAMES)) expect(text, name).toMatch(new RegExp(`\\b${name}(_bucket|_count|_sum)?\\{`));
    });

    it('filters every per-batch metric by $account (so an account label needs no rewrite) and every series by $job and $instance', () => {
      const perBatch = Object.values(METRIC_NAMES).filter((n) => n !== METRIC_NAMES.configReloadsTotal);
      for (const e of exprs) {
        for (const m of e.expr.matchAll(/\b(ibw_[a-z0-9_]+|up)\{([^}]*)\}/g)) {
          const [, metric, matchers] = m;
          expect(matchers, `${e.panel}: ${metric}`).toContain('job=~"$job",instance=~"$instance"');
          const base = metric!.replace(/_(bucket|count|sum)$/, '');
          if ((perBatch as string[]).includes(base)) expect(matchers, `${e.panel}: ${metric}`).toContain('account=~"$account"');
        }
        expect(e.expr, e.panel).not.toMatch(/\b(ibw_[a-z0-9_]+|up)(?![a-z0-9_{])/); // no selector without matchers
      }
    });

    for (const [mode, job, account] of [
      ['series without an account label, account "All"', JOB, '.*'],
      [`series labelled account="${ACCOUNT}", that account chosen`, ACCOUNT_JOB, ACCOUNT],
    ] as const) {
      it(`every expression returns data (${mode})`, async () => {
        const empty: string[] = [];
        for (const e of exprs) {
          const q = substitute(e.expr, values(job, account));
          const result: Series[] = e.instant ? await prom!.query(q) : await prom!.queryRange(q, startSec);
          const samples = result.flatMap((s) => (s.values ?? (s.value ? [s.value] : [])).map(([, v]) => Number(v)));
          if (!samples.some((v) => Number.isFinite(v))) empty.push(`${e.panel} ${e.refId}: ${q} → ${result.length} series, no finite sample`);
          if (account !== '.*') expect(result.every((s) => s.metric.account === undefined || s.metric.account === account), q).toBe(true);
        }
        expect(empty).toEqual([]);
      });
    }

    it('shows what the scenario did', async () => {
      const v = values(JOB, '.*');
      const byTitle = (title: string): string => substitute(exprs.find((e) => e.panel === title)!.expr, v);
      const labelsWithValue = async (title: string, label: string): Promise<string[]> =>
        (await prom!.query(byTitle(title))).filter((s) => Number(s.value![1]) > 0).map((s) => s.metric[label]!).sort();
      expect(await labelsWithValue('Dead letters in range', 'sink')).toEqual(['webhook']);
      expect(await labelsWithValue('Config reloads in range by outcome', 'outcome')).toEqual(expect.arrayContaining(['invalid', 'ok']));
      const settled = await prom!.query(`sum by (outcome) (increase(ibw_batch_settle_seconds_count{job="${JOB}"}[${v.__range}])) > 0`);
      expect(settled.map((s) => s.metric.outcome).sort()).toEqual(['check_failed', 'create_failed', 'created']);
      const pending = await prom!.query(byTitle('Pending'));
      expect(Number(pending[0]!.value![1])).toBe(1);
      const throttled = await prom!.queryRange(byTitle('Throttling answers'), startSec);
      expect(throttled.some((s) => s.values!.some(([, x]) => Number(x) > 0))).toBe(true);
    });

    it('has template variables that list the job, the instance and (once labelled) the account', async () => {
      const found: Record<string, string[]> = {};
      for (const variable of variables.filter((x) => x.type === 'query')) {
        const lv = parseLabelValues(variableQuery(variable));
        expect(lv, variable.name).not.toBeNull();
        expect(variable.includeAll && variable.allValue, variable.name).toBe('.*');
        const match = substitute(lv!.match, { job: '.*', instance: '.*', account: '.*' });
        found[variable.name] = await prom!.api<string[]>(`/api/v1/label/${lv!.label}/values`, { 'match[]': match, start: String(startSec) });
      }
      expect(found.job!.sort()).toEqual([JOB, ACCOUNT_JOB].sort());
      expect(found.instance!.length).toBe(1);
      expect(found.account).toEqual([ACCOUNT]);
    });
  });
});
