/**
 * Chaos on PostgreSQL (DESIGN.md §12, docs/reliability.md): three replicas (the CLI as child processes) share one
 * schema of their own PostgreSQL server (started here, so restarting it disturbs no other suite) and one account;
 * batches of mixed kinds (register: true among them) on the simulator with faults on. Meanwhile: the owner is
 * SIGKILLed every few seconds (a replacement replica starts each time), one owner is SIGSTOPped past its lease and
 * resumed (its ownership is refused by the fence: it logs so, stops working on the account and stands by, the same
 * process), and the database is restarted once. Then: 0 batches lost, 0 registrations twice, every event delivered (the events files
 * of all replicas together, and the webhook), the status calls summed over the replicas never above the budget in
 * any second, and polling resumed within lease + 5 s after each kill.
 *
 * Beside the batches, two provisioning jobs of the same account (DESIGN.md §13) run through it all, their state in
 * the database: a names job (every name created exactly once, the job complete) and a count job (no chunk sent
 * twice: the simulator holds at most one batch per chunk, and every chunk ends created or parked as unknown).
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { createSeededRandom } from '../../src/core/clock.js';
import { openPostgresLedger } from '../../src/ledger/postgres-ledger.js';
import type { ScenarioBatchInput } from '../../src/simulator/scenario.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli, SIM_ENV } from '../helpers/child.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres-server.js';
import { acknowledged, maxPerWindow, parseJsonLines, profile, sleep, startWebhookReceiver, tempDir, waitUntil, type WebhookReceiver, writeReport } from './helpers.js';

const BATCHES = profile(150, 600);
const REPLICAS = 3;
const KILLS = profile(4, 12);
const LEASE_MS = 3000;
/** Real ms between a new owner running and the next disruption. */
const GAP_MS = profile([2500, 4500] as const, [3000, 8000] as const);
const SETTLE_TIMEOUT_MS = profile(180_000, 1_200_000);
const STATUS_QPS = 20;
const SEED = 20_261_201;
const WEBHOOK_SECRET = 'pg-chaos-webhook-secret-7a3c';
const SCHEMA = 'ibw_chaos';
const PRODUCT = 'a1SimProduct1';
/** The provisioning jobs' products: one per job, so the simulator's batches of each are that job's submissions. */
const NAMES_PRODUCT = 'a1SimChaosNames';
const COUNT_PRODUCT = 'a1SimChaosCount';
const NAMES = Array.from({ length: profile(60, 200) }, (_, i) => `chaos-prov-${String(i).padStart(4, '0')}`);
// Small chunks, so the submissions (5 a second, the account's default submitQps) span the first kills.
const NAMES_CHUNK = 2;
const COUNT = profile(24, 60);
const COUNT_CHUNK = 1;

type Kind = 'custom' | 'register' | 'partial' | 'check_failed' | 'random';

interface Plan {
  kind: Kind;
  applyId: string;
  expected: 'created' | 'create_failed' | 'check_failed';
  sim: ScenarioBatchInput;
  yaml: string;
}

/** Batches that settle over the whole run (up to ~60 s of simulated time), so every disruption meets pending ones. */
function makePlans(): Plan[] {
  const random = createSeededRandom(SEED);
  const kinds: Kind[] = ['custom', 'register', 'partial', 'check_failed', 'random'];
  const plans: Plan[] = [];
  for (let i = 0; i < BATCHES; i += 1) {
    const kind = kinds[Math.floor(random.float() * kinds.length)]!;
    const applyId = String(8_000_000 + i);
    const size = 1 + Math.floor(random.float() * 4);
    const names = Array.from({ length: size }, (_, j) => `pg${i}-d${j}`);
    const checkMs = Math.floor(random.float() * 30_000);
    const createMs = Math.floor(random.float() * 30_000);
    const base = { applyId, productKey: PRODUCT, checkMs, createMs };
    let sim: ScenarioBatchInput;
    let expected: Plan['expected'] = 'created';
    let extra = '';
    switch (kind) {
      case 'custom':
        sim = { ...base, mode: 'custom', deviceNames: names, registered: true };
        break;
      case 'register':
        sim = { ...base, mode: 'custom', deviceNames: names, registered: false };
        extra = ', register: true';
        break;
      case 'partial':
        sim = { ...base, mode: 'custom', deviceNames: [...names, `pg${i}-fail`], registered: true, outcome: 'partial', failNames: [`pg${i}-fail`] };
        expected = 'create_failed';
        break;
      case 'check_failed':
        sim = { ...base, mode: 'custom', deviceNames: [...names, `pg${i}-bad`], outcome: 'check_failed', invalidNames: [`pg${i}-bad`] };
        expected = 'check_failed';
        break;
      case 'random':
        sim = { applyId, productKey: PRODUCT, createMs: createMs * 2, mode: 'random', count: size };
        break;
    }
    plans.push({ kind, applyId, expected, sim, yaml: `  - { applyId: "${applyId}", productKey: ${PRODUCT}, name: pg-chaos-${i}${extra} }` });
  }
  return plans;
}

/** {@link waitUntil} for a value: the first non-null one. */
async function need<T>(check: () => Promise<T | null> | T | null, timeoutMs: number, what: string, intervalMs: number): Promise<T> {
  return waitUntil(check, timeoutMs, what, intervalMs);
}

/** What the test reads of a job's stored state (src/provision/job-state.ts). */
interface StoredJobState {
  name: string;
  chunks: { index: number; state: string; applyId: string | null; intentAt: number | null }[];
}
const PROVISION_SETTLED = new Set(['checked', 'created', 'partial', 'failed', 'submission_unknown']);

interface Replica {
  slot: number;
  child: Child;
  /** Why the test ended it (unset: it ended by itself). */
  endedBy?: 'kill' | 'stop' | 'term' | 'self';
}

describe(`chaos on PostgreSQL: ${BATCHES} batches, ${REPLICAS} replicas, ${KILLS} × SIGKILL of the owner, a SIGSTOP, a database restart`, () => {
  let pg: TestPostgres | null = null;
  let sim: SimulatorHandle | null = null;
  let hook: WebhookReceiver | null = null;
  let dir = '';
  const replicas: Replica[] = [];
  afterAll(async () => {
    // CHAOS_DUMP=DIR keeps every replica's output for a post-mortem.
    if (process.env.CHAOS_DUMP) {
      for (const [i, r] of replicas.entries()) {
        await writeFile(join(process.env.CHAOS_DUMP, `pg-replica-${i}-slot${r.slot}-${r.endedBy ?? 'alive'}.log`), `${r.child.stdout.join('\n')}\n${r.child.stderr.join('')}`);
      }
    }
    for (const r of replicas) if (r.child.proc.exitCode === null && r.child.proc.signalCode === null) r.child.proc.kill('SIGKILL');
    await hook?.close();
    await sim?.close();
    await pg?.stop();
    if (dir && !process.env.CHAOS_KEEP) await rm(dir, { recursive: true, force: true });
  });

  it('loses nothing, registers once, delivers every event, keeps the summed QPS, fails over within lease + 5 s', async () => {
    const startedAt = Date.now();
    const plans = makePlans();
    pg = await startTestPostgres();
    sim = await startSimulator({
      port: 0,
      seed: SEED,
      timeScale: 1,
      faults: { rates: { serverError: 0.05, throttle: 0.05, slow: 0.03, slowMs: 500, reset: 0.01 }, seed: SEED + 1 },
    });
    for (const p of plans) sim.control.addBatch(p.sim);
    sim.control.addProduct(NAMES_PRODUCT);
    sim.control.addProduct(COUNT_PRODUCT);
    hook = await startWebhookReceiver({ secret: WEBHOOK_SECRET, failRate: 0.05, seed: SEED + 2 });
    dir = await tempDir('pg-replicas');
    const configFile = (slot: number): string => join(dir, `watcher-${slot}.yaml`);
    const eventsFile = (slot: number): string => join(dir, `events-${slot}.jsonl`);
    const namesFile = join(dir, 'chaos-line.txt');
    await writeFile(namesFile, `${NAMES.join('\n')}\n`);
    for (let slot = 0; slot < REPLICAS; slot += 1) {
      await writeFile(
        configFile(slot),
        [
          `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}", requestTimeout: 3s }`,
          'polling: { initialDelay: 300ms, maxDelay: 2s, timeout: 1h, awaitingRegistrationDelay: 1s }',
          `rateLimit: { statusQps: ${STATUS_QPS}, pageQps: 20, concurrency: 8 }`,
          `state: { dir: "${join(dir, `state-${slot}`)}", backend: postgres, postgres: { schema: ${SCHEMA}, lease: ${LEASE_MS}ms } }`,
          'output:',
          `  resultsDir: "${join(dir, `results-${slot}`)}"`,
          `  eventsFile: "${eventsFile(slot)}"`,
          `  webhook: { url: "${hook.url}", secretEnv: IBW_WEBHOOK_SECRET, timeout: 2s }`,
          'http: { listen: "off" }',
          'provision:',
          `  - { name: chaos-line, productKey: ${NAMES_PRODUCT}, devices: "${namesFile}", chunkSize: ${NAMES_CHUNK} }`,
          `  - { name: chaos-count, productKey: ${COUNT_PRODUCT}, count: ${COUNT}, chunkSize: ${COUNT_CHUNK} }`,
          'batches:',
          ...plans.map((p) => p.yaml),
          '',
        ].join('\n'),
      );
    }
    const env = { ...SIM_ENV, IBW_WEBHOOK_SECRET: WEBHOOK_SECRET, IBW_DATABASE_URL: pg.url };
    const spawnReplica = (slot: number): Replica => {
      const r: Replica = { slot, child: runCli(['run', '--config', configFile(slot)], env) };
      replicas.push(r);
      return r;
    };
    const alive = (): Replica[] => replicas.filter((r) => r.child.proc.exitCode === null && r.child.proc.signalCode === null);
    const q = async <R,>(text: string): Promise<R[]> => {
      const { default: pgModule } = await import('pg');
      const client = new pgModule.Client({ connectionString: pg!.url });
      await client.connect();
      try {
        return (await client.query(text)).rows as R[];
      } finally {
        await client.end();
      }
    };
    /** The provisioning jobs' states as the database holds them. */
    const jobStates = async (): Promise<StoredJobState[]> =>
      (await q<{ state: StoredJobState }>(`SELECT state FROM ${SCHEMA}.provision_jobs WHERE account = 'default' ORDER BY name`).catch(() => [])).map((r) => r.state);
    /** The owning replica, as the lease row says (owner ids are `<host>:<pid>:<random>`). */
    const owner = async (): Promise<{ replica: Replica; epoch: number } | null> => {
      const rows = await q<{ owner: string | null; epoch: string; live: boolean }>(
        `SELECT owner, epoch, expires_at > clock_timestamp() AS live FROM ${SCHEMA}.leases WHERE account = 'default'`,
      ).catch(() => []);
      const row = rows[0];
      if (!row?.owner || !row.live) return null;
      const pid = Number(row.owner.split(':').at(-2));
      const replica = alive().find((r) => r.child.proc.pid === pid);
      return replica ? { replica, epoch: Number(row.epoch) } : null;
    };
    const statusAfter = (t: number): number | null => {
      const e = sim!.control.requestLog().find((x) => x.action === 'QueryBatchRegisterDeviceStatus' && x.at > t);
      return e ? e.at : null;
    };
    /** Keeps three replicas: one that ended by itself (a lost lease) is replaced and counted. */
    const selfExits: { slot: number; code: number | null; leaseLost: boolean }[] = [];
    const topUp = (): void => {
      for (const r of [...replicas]) {
        if (r.endedBy || r.child.proc.exitCode === null) continue;
        r.endedBy = 'self';
        selfExits.push({ slot: r.slot, code: r.child.proc.exitCode, leaseLost: r.child.stdout.some((l) => l.includes('LeaseLost')) });
      }
      for (let slot = 0; slot < REPLICAS; slot += 1) if (!alive().some((r) => r.slot === slot)) spawnReplica(slot);
    };

    for (let slot = 0; slot < REPLICAS; slot += 1) spawnReplica(slot);
    await waitUntil(() => owner(), 90_000, 'a first owner', 200);
    const random = createSeededRandom(SEED + 3);
    const gap = (): Promise<void> => sleep(GAP_MS[0] + Math.floor(random.float() * (GAP_MS[1] - GAP_MS[0])));

    // The disruptions, in order: kills, the database restart after the first, the SIGSTOP after the third.
    const failovers: { killedAt: number; newOwnerMs: number; pollingResumedMs: number }[] = [];
    let stopped: { refusedLine: string | null; lostLine: string | null; standbyAfterMs: number; alive: boolean; tookOverMs: number } | null = null;
    let dbRestart: { downMs: number; pollingResumedMs: number } | null = null;
    for (let k = 0; k < KILLS; k += 1) {
      await gap();
      topUp();
      const current = await need(() => owner(), 60_000, 'an owner before the kill', 100);
      const killedAt = Date.now();
      current.replica.endedBy = 'kill';
      current.replica.child.proc.kill('SIGKILL');
      await current.replica.child.exited;
      spawnReplica(current.replica.slot);
      const next = await need(async () => {
        const o = await owner();
        return o && o.epoch > current.epoch ? o : null;
      }, LEASE_MS + 30_000, 'a new owner after the kill', 50);
      const newOwnerMs = Date.now() - killedAt;
      const resumedAt = await need(() => statusAfter(killedAt + 50), LEASE_MS + 30_000, 'polling after the kill', 50);
      failovers.push({ killedAt, newOwnerMs, pollingResumedMs: resumedAt - killedAt });
      expect(next.replica).not.toBe(current.replica);

      if (k === 2) {
        // SIGSTOP the owner past its lease: another replica takes over; resumed, the old owner must not write.
        await gap();
        topUp();
        const paused = await need(() => owner(), 60_000, 'an owner to pause', 100);
        const pausedAt = Date.now();
        paused.replica.endedBy = 'stop';
        paused.replica.child.proc.kill('SIGSTOP');
        await waitUntil(async () => {
          const o = await owner();
          return o && o.epoch > paused.epoch;
        }, LEASE_MS + 30_000, 'a takeover from the paused owner', 50);
        const tookOverMs = Date.now() - pausedAt;
        await sleep(1000);
        const resumedAt = Date.now();
        paused.replica.child.proc.kill('SIGCONT');
        delete paused.replica.endedBy; // it lives on, as a standby
        const out = paused.replica.child.stdout;
        await paused.replica.child.waitFor(/another replica owns the account now: stopping work on it and standing by/, 30_000);
        const standbyAfterMs = Date.now() - resumedAt;
        await sleep(2000); // the writes it had in flight meet the fence meanwhile
        stopped = {
          // A write in flight when it resumed, refused inside the database by the epoch check (racy: its renewal
          // may find the new epoch first, and then nothing is even sent).
          refusedLine: out.find((l) => l.includes('the fence refused a') || l.includes('refused: this replica lost the lease')) ?? null,
          lostLine: out.find((l) => l.includes('lost the account lease to another replica')) ?? null,
          standbyAfterMs,
          alive: paused.replica.child.proc.exitCode === null,
          tookOverMs,
        };
      }
      if (k === 0) {
        // The database restarts under everyone.
        await gap();
        topUp();
        const downAt = Date.now();
        await pg.halt();
        await sleep(1500);
        await pg.resume();
        const downMs = Date.now() - downAt;
        await waitUntil(() => owner(), 60_000, 'an owner after the database restart', 100);
        const back = Date.now();
        const pending = await q<{ n: string }>(`SELECT count(*) AS n FROM ${SCHEMA}.batches WHERE rec->>'state' <> 'settled'`).catch(() => []);
        const resumedAt = await need(() => statusAfter(back), LEASE_MS + 30_000, `polling after the database restart (${pending[0]?.n ?? '?'} pending in the compacted table)`, 50);
        dbRestart = { downMs, pollingResumedMs: resumedAt - downAt };
      }
    }

    // Settle: every batch's settled event acknowledged by the webhook, then the ledger checked.
    await waitUntil(
      () => {
        topUp();
        const settled = new Set(hook!.deliveries.filter((d) => d.answered === 200 && d.type === 'batch.settled').map((d) => d.applyId));
        return plans.every((p) => settled.has(p.applyId));
      },
      SETTLE_TIMEOUT_MS,
      'a batch.settled event for every batch at the webhook',
      500,
    );
    const reader = await openPostgresLedger({ connectionString: pg.url, schema: SCHEMA, leaseMs: LEASE_MS, acquire: false, renewEveryMs: 0 });
    try {
      await waitUntil(
        async () => {
          const snap = await reader.load();
          const jobs = await jobStates();
          return (
            plans.every((p) => snap.batches.has(`${PRODUCT}/${p.applyId}`)) &&
            [...snap.batches.values()].every((b) => b.state === 'settled') &&
            jobs.length === 2 &&
            jobs.every((j) => j.chunks.every((c) => PROVISION_SETTLED.has(c.state))) &&
            snap.outbox.size === 0
          );
        },
        120_000,
        'every batch and provisioning chunk settled and every event delivered, in the database',
        1000,
      );
    } finally {
      await reader.close();
    }
    const last = alive();
    for (const r of last) {
      r.endedBy = 'term';
      r.child.proc.kill('SIGTERM');
    }
    const exits = await Promise.all(last.map((r) => r.child.exited));
    const termCodes = exits.map((e) => e.code);
    const elapsedMs = Date.now() - startedAt;

    // ---- zero lost: every batch settled with its expected outcome; the results table agrees ----
    const reader2 = await openPostgresLedger({ connectionString: pg.url, schema: SCHEMA, leaseMs: LEASE_MS, acquire: false, renewEveryMs: 0 });
    const snap = await reader2.load();
    await reader2.close();
    const wrong = plans
      .map((p) => ({ p, rec: snap.batches.get(`${PRODUCT}/${p.applyId}`) }))
      .filter(({ p, rec }) => rec?.state !== 'settled' || rec.outcome !== p.expected)
      .map(({ p, rec }) => `${p.applyId} (${p.kind}): ${rec?.state}/${rec?.outcome}, expected ${p.expected}`);
    const results = await q<{ apply_id: string; outcome: string; device_count: number }>(`SELECT apply_id, outcome, device_count FROM ${SCHEMA}.results`);
    const resultOf = new Map(results.map((r) => [r.apply_id, r]));
    const simDevices = sim.control.devices(PRODUCT);
    const wrongResults = plans
      .filter((p) => {
        const r = resultOf.get(p.applyId);
        const devices = simDevices.filter((d) => d.applyId === p.applyId).length;
        return r?.outcome !== p.expected || (p.expected !== 'check_failed' && r.device_count !== devices);
      })
      .map((p) => p.applyId);

    // ---- register: true registered exactly once, others never ----
    const registrationProblems = plans
      .filter((p) => sim!.control.registrations(p.applyId) !== (p.kind === 'register' ? 1 : 0))
      .map((p) => `${p.applyId} (${p.kind}): ${sim!.control.registrations(p.applyId)} registrations`);

    // ---- events: all of them in the events files together, and acknowledged by the webhook ----
    const fileIds = new Map<string, number>();
    const settledInFiles = new Set<string>();
    let tornLines = 0;
    for (let slot = 0; slot < REPLICAS; slot += 1) {
      const parsed = parseJsonLines(await readFile(eventsFile(slot), 'utf8').catch(() => ''));
      tornLines += parsed.torn;
      for (const e of parsed.values) {
        fileIds.set(String(e.id), (fileIds.get(String(e.id)) ?? 0) + 1);
        if (e.type === 'batch.settled') settledInFiles.add(String(e.applyId));
      }
    }
    const hookAcks = acknowledged(hook.deliveries);
    const all = new Set([...fileIds.keys(), ...hookAcks.keys()]);
    const missingInFiles = [...all].filter((id) => !fileIds.has(id));
    const missingAtHook = [...all].filter((id) => !hookAcks.has(id));

    // ---- provisioning: every name created once and the names job complete; no count chunk sent twice ----
    const jobs = new Map((await jobStates()).map((j) => [j.name, j]));
    const namesJob = jobs.get('chaos-line');
    const countJob = jobs.get('chaos-count');
    const createdNames = sim.control.devices(NAMES_PRODUCT).map((d) => d.deviceName);
    const namesTwice = NAMES.filter((n) => createdNames.filter((x) => x === n).length !== 1);
    const namesRegisteredTwice = sim.control.batches().filter((b) => b.productKey === NAMES_PRODUCT && sim!.control.registrations(b.applyId) > 1).map((b) => b.applyId);
    const countBatches = sim.control.batches().filter((b) => b.productKey === COUNT_PRODUCT);
    const countChunks = Math.ceil(COUNT / COUNT_CHUNK);
    const countApplyIds = (countJob?.chunks ?? []).map((c) => c.applyId).filter((a): a is string => a !== null);
    // Each simulator batch of the count job is one send. It is either the ApplyId a created chunk recorded, or the
    // send of a parked chunk that was on the wire (it arrived within moments of that chunk's last intent). Matched
    // one to one, a chunk sent twice leaves a batch over: its earlier send matches neither.
    const parkedIntents = (countJob?.chunks ?? []).filter((c) => c.state === 'submission_unknown' && c.intentAt !== null).map((c) => c.intentAt!);
    const unmatchedSends = countBatches
      .filter((b) => !countApplyIds.includes(b.applyId))
      .filter((b) => {
        const i = parkedIntents.findIndex((at) => b.startedAt >= at - 50 && b.startedAt <= at + 1500);
        if (i === -1) return true;
        parkedIntents.splice(i, 1);
        return false;
      })
      .map((b) => b.applyId);
    const submissions = sim.control.requestLog().filter((e) => e.action === 'BatchCheckDeviceNames' || e.action === 'BatchRegisterDevice');
    const lastSubmissionAt = Math.max(0, ...submissions.map((e) => e.at));
    const killsDuringProvisioning = failovers.filter((f) => f.killedAt < lastSubmissionAt).length;
    const provisionProblems = [
      ...(namesJob?.chunks.length === Math.ceil(NAMES.length / NAMES_CHUNK) && namesJob.chunks.every((c) => c.state === 'created') ? [] : ['chaos-line: not every chunk created']),
      ...namesTwice.map((n) => `${n}: created ${createdNames.filter((x) => x === n).length} times`),
      ...namesRegisteredTwice.map((a) => `names ApplyId ${a} registered twice`),
      ...(countJob?.chunks.length === countChunks && countJob.chunks.every((c) => c.state === 'created' || c.state === 'submission_unknown') ? [] : ['chaos-count: a chunk neither created nor parked']),
      ...(countBatches.length <= countChunks ? [] : [`chaos-count: ${countBatches.length} batches in the simulator for ${countChunks} chunks (a chunk sent twice)`]),
      ...unmatchedSends.map((a) => `chaos-count: simulator batch ${a} is no chunk's ApplyId and no parked chunk's send (a chunk sent twice)`),
      ...(new Set(countApplyIds).size === countApplyIds.length && countApplyIds.every((a) => countBatches.some((b) => b.applyId === a)) ? [] : ['chaos-count: a chunk ApplyId twice or unknown to the simulator']),
    ];

    // ---- the status QPS summed over the replicas (one simulator sees them all) ----
    const log = sim.control.requestLog();
    const statusTimes = log.filter((e) => e.action === 'QueryBatchRegisterDeviceStatus').map((e) => e.at);
    const busiest = maxPerWindow(statusTimes, 1000);

    writeReport('postgres-replicas', {
      batches: BATCHES,
      replicas: REPLICAS,
      leaseMs: LEASE_MS,
      kills: failovers.length,
      failovers: failovers.map((f) => ({ newOwnerMs: f.newOwnerMs, pollingResumedMs: f.pollingResumedMs })),
      sigstop: stopped,
      dbRestart,
      selfExits,
      termCodes,
      lostBatches: wrong.length,
      wrongResults: wrongResults.length,
      registerBatches: plans.filter((p) => p.kind === 'register').length,
      registrationProblems: registrationProblems.length,
      events: all.size,
      eventsFileLines: [...fileIds.values()].reduce((a, b) => a + b, 0),
      eventsFileTornLines: tornLines,
      webhookAcked: [...hookAcks.values()].reduce((a, b) => a + b, 0),
      provision: {
        names: NAMES.length,
        namesCreated: createdNames.length,
        countChunks,
        countChunksCreated: countJob?.chunks.filter((c) => c.state === 'created').length ?? 0,
        countChunksParked: countJob?.chunks.filter((c) => c.state === 'submission_unknown').length ?? 0,
        countBatchesInSimulator: countBatches.length,
        countSendsUnmatched: unmatchedSends.length,
        submissions: submissions.length,
        killsDuringProvisioning,
        problems: provisionProblems.length,
      },
      missingInEventsFiles: missingInFiles.length,
      missingAtWebhook: missingAtHook.length,
      statusQpsConfigured: STATUS_QPS,
      statusMaxIn1s: busiest.max,
      requests: log.length,
      elapsedSec: Math.round(elapsedMs / 1000),
    });

    expect(wrong, wrong.slice(0, 10).join('\n')).toEqual([]);
    expect(wrongResults, `wrong rows in the results table: ${wrongResults.slice(0, 10).join(', ')}`).toEqual([]);
    expect(registrationProblems, registrationProblems.slice(0, 10).join('\n')).toEqual([]);
    expect(provisionProblems, provisionProblems.slice(0, 10).join('\n')).toEqual([]);
    expect(killsDuringProvisioning, 'owners killed while the provisioning jobs were still submitting').toBeGreaterThanOrEqual(1);
    expect(missingInFiles, `events missing from every events file: ${missingInFiles.slice(0, 5).join(', ')}`).toEqual([]);
    expect(missingAtHook, `events never acknowledged by the webhook: ${missingAtHook.slice(0, 5).join(', ')}`).toEqual([]);
    expect(plans.filter((p) => !settledInFiles.has(p.applyId)).map((p) => p.applyId)).toEqual([]);
    expect(busiest.max, `status requests in the busiest second (from ${busiest.at})`).toBeLessThanOrEqual(STATUS_QPS);
    expect(failovers).toHaveLength(KILLS);
    for (const f of failovers) expect(f.pollingResumedMs, JSON.stringify(f)).toBeLessThanOrEqual(LEASE_MS + 5000);
    // The paused owner: its ownership was refused when it came back (a fenced write refused, or its renewal found
    // the new epoch); it stopped working on the account and stands by, still the same process.
    expect(stopped).not.toBeNull();
    expect(stopped!.refusedLine ?? stopped!.lostLine, JSON.stringify(stopped)).not.toBeNull();
    expect(stopped!.alive).toBe(true);
    expect(stopped!.tookOverMs).toBeLessThanOrEqual(LEASE_MS + 5000);
    // No replica ended by itself: not the database restart, not a lost lease.
    expect(selfExits, JSON.stringify(selfExits)).toEqual([]);
    expect(termCodes.every((c) => c === 0), JSON.stringify(termCodes)).toBe(true);
  });
});

describe('chaos on PostgreSQL: two accounts over three replicas', () => {
  let pg: TestPostgres | null = null;
  const sims: SimulatorHandle[] = [];
  const children: Child[] = [];
  let dir = '';
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
    for (const s of sims) await s.close();
    await pg?.stop();
    if (dir && !process.env.CHAOS_KEEP) await rm(dir, { recursive: true, force: true });
  });

  it('spreads 1/1/0, moves a killed owner\'s account within lease + 5 s, and hands over at once on SIGTERM', async () => {
    pg = await startTestPostgres();
    const keys = { 'fleet-a': ['FleetAKeyId', 'FleetASecret'], 'fleet-b': ['FleetBKeyId', 'FleetBSecret'] } as const;
    const accounts = Object.keys(keys) as (keyof typeof keys)[];
    const simOf = new Map<string, SimulatorHandle>();
    for (const [i, name] of accounts.entries()) {
      const sim = await startSimulator({ port: 0, timeScale: 1, seed: 40 + i, accessKeyId: keys[name][0], accessKeySecret: keys[name][1] });
      for (let b = 0; b < 5; b += 1) sim.control.addBatch({ applyId: String(8_500_000 + i * 100 + b), productKey: PRODUCT, mode: 'random', count: 1, outcome: 'never' });
      sims.push(sim);
      simOf.set(name, sim);
    }
    dir = await tempDir('pg-accounts');
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        'alibaba: { regionId: cn-shanghai, endpoint: "http://127.0.0.1:1" }',
        'accounts:',
        ...accounts.map((name, i) => `  - { name: ${name}, endpoint: "${simOf.get(name)!.url}", credentials: { accessKeyIdEnv: AK${i}, accessKeySecretEnv: SK${i} }, rateLimit: { statusQps: 10, pageQps: 10 } }`),
        'polling: { initialDelay: 200ms, maxDelay: 1s, timeout: 1h }',
        `state: { dir: "${join(dir, 'state')}", backend: postgres, postgres: { schema: ibw_accounts, lease: ${LEASE_MS}ms } }`,
        `output: { resultsDir: "${join(dir, 'results')}" }`,
        'http: { listen: "off" }',
        'batches:',
        ...accounts.flatMap((name, i) => Array.from({ length: 5 }, (_, b) => `  - { account: ${name}, applyId: "${8_500_000 + i * 100 + b}", productKey: ${PRODUCT} }`)),
        '',
      ].join('\n'),
    );
    const env = { AK0: keys['fleet-a'][0], SK0: keys['fleet-a'][1], AK1: keys['fleet-b'][0], SK1: keys['fleet-b'][1], IBW_DATABASE_URL: pg.url };
    const spawn = (): Child => {
      const c = runCli(['run', '--config', configFile], env);
      children.push(c);
      return c;
    };
    const live = (): Child[] => children.filter((c) => c.proc.exitCode === null && c.proc.signalCode === null);
    const { default: pgModule } = await import('pg');
    const owners = async (): Promise<Map<string, Child>> => {
      const client = new pgModule.Client({ connectionString: pg!.url });
      await client.connect();
      try {
        const { rows } = await client.query<{ account: string; owner: string }>(
          'SELECT account, owner FROM ibw_accounts.leases WHERE owner IS NOT NULL AND expires_at > clock_timestamp()',
        );
        const out = new Map<string, Child>();
        for (const r of rows) {
          const child = live().find((c) => c.proc.pid === Number(r.owner.split(':').at(-2)));
          if (child) out.set(r.account, child);
        }
        return out;
      } catch {
        return new Map();
      } finally {
        await client.end();
      }
    };
    const spread = async (): Promise<number[]> => {
      const o = await owners();
      return live().map((c) => [...o.values()].filter((x) => x === c).length).sort();
    };

    // Started one after the other: the first takes both, the later ones get their share handed over.
    for (let i = 0; i < 3; i += 1) {
      spawn();
      await sleep(1500);
    }
    await waitUntil(async () => JSON.stringify(await spread()) === '[0,1,1]', 60_000, 'ownership 1/1/0', 200);
    await sleep(2 * LEASE_MS); // stable over several heartbeats
    const settled = await spread();
    expect(settled).toEqual([0, 1, 1]);

    // Each owner finished its start (housekeeping, reload) although its other account stands by for good.
    for (const c of new Set((await owners()).values())) expect(c.stdout.some((l) => l.includes('iot-batch-watcher running'))).toBe(true);

    // kill -9 one owner: its account moves to the replica that had none; the other owner keeps its own.
    const before = await owners();
    const [moved, victim] = [...before][0]!;
    const [kept, keeper] = [...before][1]!;
    const idle = live().find((c) => c !== victim && c !== keeper)!;
    const killedAt = Date.now();
    victim.proc.kill('SIGKILL');
    await victim.exited;
    await waitUntil(async () => (await owners()).get(moved) === idle, LEASE_MS + 30_000, 'the killed owner\'s account moved', 50);
    const movedMs = Date.now() - killedAt;
    const polledAt = await need(
      () => simOf.get(moved)!.control.requestLog().find((e) => e.action === 'QueryBatchRegisterDeviceStatus' && e.at > killedAt + 50)?.at ?? null,
      LEASE_MS + 30_000,
      'polling of the moved account',
      50,
    );
    expect((await owners()).get(kept)).toBe(keeper);

    // SIGTERM an owner: it hands its account over at once (released, not lapsed).
    const termAt = Date.now();
    keeper.proc.kill('SIGTERM');
    const termExit = await keeper.exited;
    await waitUntil(async () => (await owners()).has(kept), LEASE_MS + 30_000, 'the account of the SIGTERMed owner taken', 50);
    const handedOverMs = Date.now() - termAt;

    writeReport('postgres-accounts', { accounts: 2, replicas: 3, leaseMs: LEASE_MS, spread: settled, movedMs, pollingResumedMs: polledAt - killedAt, handedOverMs, termCode: termExit.code });
    expect(movedMs).toBeLessThanOrEqual(LEASE_MS + 5000);
    expect(polledAt - killedAt).toBeLessThanOrEqual(LEASE_MS + 5000);
    expect(termExit.code).toBe(0);
    // The SIGTERMed replica's stop (watcher, outbox drain ≤ 3 s) comes first; the lease then goes at once, well
    // before it could lapse on its own after the last renewal.
    expect(handedOverMs).toBeLessThan(LEASE_MS + 5000);
  });
});
