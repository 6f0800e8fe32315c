/**
 * Benchmark 1: client throughput. Our client (createRpcClient + createIotApi, V3, one attempt per call) against
 * the official SDK (@alicloud/iot20180120 + @alicloud/openapi-client, V3 default), both calling
 * QueryBatchRegisterDeviceStatus on the simulator with every QPS limit off.
 *
 * Method:
 * - The simulator runs in a child process (sim-child.ts), so its CPU is not charged to the client.
 * - For each concurrency level, one warm-up run per client, then `rounds` rounds of (ours, sdk) runs of the
 *   same number of requests, alternating which goes first, so drift (CPU frequency, GC, the simulator's
 *   nonce memory) hits both alike.
 * - Per run: wall time, `process.cpuUsage()` delta of this process (user + system), the latency of every
 *   request, and the TCP connections opened (diagnostics channel `net.client.socket`), which shows keep-alive.
 * - The SDK gets the keep-alive it allows: it sends through httpx's module-level `http.Agent({keepAlive:
 *   true})` as long as `RuntimeOptions.keepAlive` is left unset. Setting it (to anything) makes Tea create a
 *   new Agent per request, and `doRequest` does not forward it anyway, so we leave it unset.
 * - Explicit AccessKey pair in the SDK Config, so its credential chain never runs.
 * - Our client comes from `dist/` (`code: 'dist'`, the build users run: plain JavaScript, no loader) or from
 *   `src/` through tsx (`code: 'src'`, which wraps every function in tsx's `__name` helper). The harness itself,
 *   the SDK and the floor are the same either way.
 */
import * as IotNs from '@alicloud/iot20180120';
import * as OpenApiNs from '@alicloud/openapi-client';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

import { Pool } from 'undici';

import * as srcIotApi from '../../src/alibaba/iot-api.js';
import { buildSignedRequest, IOT_API_VERSION } from '../../src/alibaba/rpc-client.js';
import * as srcRpcClient from '../../src/alibaba/rpc-client.js';
import { formatTimestamp } from '../../src/alibaba/sign-v1.js';
import { startSimulatorChild, type SimChildInfo } from './sim-child.js';
import { percentile } from './stats.js';

// NOTE: both packages are CommonJS; under ESM the client class may sit one `default` deeper.
interface SdkClient {
  queryBatchRegisterDeviceStatus(request: unknown): Promise<{ body?: { success?: boolean; data?: { status?: string } } }>;
}
type Ctor<T> = new (init: Record<string, unknown>) => T;
type Loose = Record<string, unknown> & { default?: Loose };
const iotNs = IotNs as unknown as Loose;
const openApiNs = OpenApiNs as unknown as Loose;
const IotClient = (iotNs.default?.default ?? iotNs.default) as unknown as new (config: unknown) => SdkClient;
const OpenApiConfig = (openApiNs.Config ?? openApiNs.default?.Config) as Ctor<unknown>;
const QueryRequest = (iotNs.QueryBatchRegisterDeviceStatusRequest ?? iotNs.default?.QueryBatchRegisterDeviceStatusRequest) as Ctor<unknown>;

const SIM_AK = 'SimAccessKeyId';
const SIM_SECRET = 'SimAccessKeySecret';

export interface ClientBenchOptions {
  /** @default [1, 16, 64] */
  concurrency?: number[];
  /** Requests per run, per concurrency level. @default 2000 (c=1) / 4000 */
  requestsPerRun?: (concurrency: number) => number;
  /** Measured rounds (each = one run of ours + one of the SDK). @default 3 */
  rounds?: number;
  /** Requests of the unmeasured warm-up run of each client. @default 500 */
  warmup?: number;
  /** Where our client's code comes from: `dist` (built, what users run; needs `npm run build`) or `src` through tsx. @default 'dist' */
  code?: ClientCode;
}

/** Where our client's code is loaded from. */
export type ClientCode = 'src' | 'dist';

/** The two modules our client is made of, from `src/` or `dist/`. */
interface OurModules {
  createRpcClient: typeof srcRpcClient.createRpcClient;
  createIotApi: typeof srcIotApi.createIotApi;
}

const REPO = resolve(import.meta.dirname, '../..');

/** Loads our client from `dist/`, refusing a build older than its sources (the figure would not be this code's). */
async function loadOurModules(code: ClientCode): Promise<OurModules> {
  if (code === 'src') return { createRpcClient: srcRpcClient.createRpcClient, createIotApi: srcIotApi.createIotApi };
  // NOTE: the modules of one status call; a stale one would measure other code than the sources.
  const modules = ['alibaba/rpc-client', 'alibaba/iot-api', 'alibaba/sign-v3', 'alibaba/lossless-json', 'alibaba/percent-encode', 'http-exchange'];
  for (const name of modules) {
    const distFile = resolve(REPO, `dist/${name}.js`);
    let distMs: number;
    try {
      distMs = statSync(distFile).mtimeMs;
    } catch {
      throw new Error(`${distFile} is missing: run \`npm run build\` first (client benchmark with --client-code=dist)`);
    }
    if (statSync(resolve(REPO, `src/${name}.ts`)).mtimeMs > distMs) {
      throw new Error(`src/${name}.ts is newer than dist/${name}.js: run \`npm run build\` first`);
    }
  }
  const rpc = (await import(pathToFileURL(resolve(REPO, 'dist/alibaba/rpc-client.js')).href)) as typeof srcRpcClient;
  const api = (await import(pathToFileURL(resolve(REPO, 'dist/alibaba/iot-api.js')).href)) as typeof srcIotApi;
  return { createRpcClient: rpc.createRpcClient, createIotApi: api.createIotApi };
}

/** Aggregated figures of one client at one concurrency. */
export interface ClientFigures {
  requests: number;
  errors: number;
  wallMs: number;
  cpuMs: number;
  requestsPerSec: number;
  cpuMsPerRequest: number;
  /** User-mode part of cpuMsPerRequest (JavaScript, JSON, crypto). */
  userMsPerRequest: number;
  /** Kernel part of cpuMsPerRequest (socket syscalls, wake-ups, loopback TCP). */
  systemMsPerRequest: number;
  /** Requests per CPU-second of the client process. */
  requestsPerCpuSec: number;
  p50Ms: number;
  p99Ms: number;
  /** TCP connections opened during the measured runs (0 = every request reused a kept-alive socket). */
  connections: number;
  /** TCP connections opened during the warm-up run. */
  warmupConnections: number;
}

export interface ClientBenchLevel {
  concurrency: number;
  ours: ClientFigures;
  sdk: ClientFigures;
  /**
   * The transport floor: the same request bytes as ours (signed once, so the simulator answers
   * `SignatureNonceUsed` after verifying the signature) sent on a bare undici Pool, the JSON answer read and
   * parsed. No signing, no retry wrapper, no normalisation: what any Node HTTP/1.1 client pays per request.
   */
  floor: ClientFigures;
  /** (sdk.cpuMsPerRequest − floor) / (ours.cpuMsPerRequest − floor): the client libraries' own CPU, compared. */
  overheadRatio: number;
  /** ours.cpuMsPerRequest / floor.cpuMsPerRequest: our client's CPU per request against the transport floor (target ≤ 1.2). */
  floorRatio: number;
  /** sdk.cpuMsPerRequest / floor.cpuMsPerRequest, for reference. */
  sdkFloorRatio: number;
  /** ours.requestsPerCpuSec / sdk.requestsPerCpuSec */
  cpuEfficiencyRatio: number;
  /** ours.requestsPerSec / sdk.requestsPerSec (wall clock; bounded by the simulator on 2 cores) */
  throughputRatio: number;
}

export interface ClientBenchResult {
  levels: ClientBenchLevel[];
  rounds: number;
  simulator: string;
  /** The lowest cpuEfficiencyRatio over the levels. */
  minCpuEfficiencyRatio: number;
  /** The highest floorRatio over the levels. */
  maxFloorRatio: number;
  target: { cpuEfficiencyRatio: number; met: boolean };
  /** Issue #14: our CPU per request ≤ 1.2× the transport floor at every concurrency. */
  floorTarget: { floorRatio: number; met: boolean };
  /** Where our client's code came from. */
  code: ClientCode;
}

type Call = () => Promise<void>;

interface RunSample {
  requests: number;
  errors: number;
  wallMs: number;
  cpuMs: number;
  userMs: number;
  systemMs: number;
  latencies: Float64Array;
  connections: number;
}

let connectionsOpened = 0;
const onSocket = (): void => {
  connectionsOpened += 1;
};

async function runOnce(call: Call, requests: number, concurrency: number): Promise<RunSample> {
  const latencies = new Float64Array(requests);
  let next = 0;
  let errors = 0;
  let firstError: unknown = null;
  const conn0 = connectionsOpened;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < requests) {
      const i = next;
      next += 1;
      const s = performance.now();
      try {
        await call();
      } catch (err) {
        errors += 1;
        firstError ??= err;
      }
      latencies[i] = performance.now() - s;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (errors > 0) console.error(`  ${errors} errors, first:`, firstError);
  return {
    requests,
    errors,
    wallMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    userMs: cpu.user / 1000,
    systemMs: cpu.system / 1000,
    latencies,
    connections: connectionsOpened - conn0,
  };
}

function aggregate(samples: RunSample[], warm: RunSample): ClientFigures {
  const requests = samples.reduce((s, r) => s + r.requests, 0);
  const errors = samples.reduce((s, r) => s + r.errors, 0);
  const wallMs = samples.reduce((s, r) => s + r.wallMs, 0);
  const cpuMs = samples.reduce((s, r) => s + r.cpuMs, 0);
  const all = new Float64Array(requests);
  let o = 0;
  for (const r of samples) {
    all.set(r.latencies, o);
    o += r.latencies.length;
  }
  all.sort();
  return {
    requests,
    errors,
    wallMs,
    cpuMs,
    requestsPerSec: (requests * 1000) / wallMs,
    cpuMsPerRequest: cpuMs / requests,
    userMsPerRequest: samples.reduce((s, r) => s + r.userMs, 0) / requests,
    systemMsPerRequest: samples.reduce((s, r) => s + r.systemMs, 0) / requests,
    requestsPerCpuSec: (requests * 1000) / cpuMs,
    p50Ms: percentile(all, 0.5),
    p99Ms: percentile(all, 0.99),
    connections: samples.reduce((s, r) => s + r.connections, 0),
    warmupConnections: warm.connections,
  };
}

function ourClient(info: SimChildInfo, { createRpcClient, createIotApi }: OurModules): { call: Call; close: () => Promise<void> } {
  const rpc = createRpcClient({
    endpoint: info.url,
    credentials: { get: async () => ({ accessKeyId: SIM_AK, accessKeySecret: SIM_SECRET, securityToken: null }) },
    signatureVersion: 'v3',
    maxAttempts: 1,
  });
  const api = createIotApi({ rpc });
  const target = { productKey: info.productKey, applyId: info.applyId, iotInstanceId: null };
  return {
    call: async () => {
      const r = await api.queryBatchRegisterDeviceStatus(target);
      if (r.status !== 'CREATE') throw new Error(`unexpected status ${String(r.status)}`);
    },
    close: () => rpc.close(),
  };
}

function sdkClient(info: SimChildInfo): { call: Call; close: () => Promise<void> } {
  const url = new URL(info.url);
  const client = new IotClient(
    new OpenApiConfig({
      accessKeyId: SIM_AK,
      accessKeySecret: SIM_SECRET,
      endpoint: url.host,
      protocol: 'HTTP',
      regionId: 'cn-shanghai',
      readTimeout: 10_000,
      connectTimeout: 10_000,
    }),
  );
  const applyId = Number(info.applyId);
  return {
    call: async () => {
      const res = await client.queryBatchRegisterDeviceStatus(new QueryRequest({ productKey: info.productKey, applyId }));
      if (res.body?.success !== true || res.body.data?.status !== 'CREATE') throw new Error(`unexpected answer ${JSON.stringify(res.body)}`);
    },
    close: async () => {},
  };
}

function floorClient(info: SimChildInfo): { call: Call; close: () => Promise<void> } {
  const url = new URL(info.url);
  const pool = new Pool(url.origin, { connections: 16, keepAliveTimeout: 4000 });
  const req = buildSignedRequest({
    signatureVersion: 'v3',
    action: 'QueryBatchRegisterDeviceStatus',
    version: IOT_API_VERSION,
    params: { ProductKey: info.productKey, ApplyId: info.applyId },
    host: url.host,
    credentials: { accessKeyId: SIM_AK, accessKeySecret: SIM_SECRET, securityToken: null },
    timestamp: formatTimestamp(Date.now()),
    nonce: 'bench-floor-fixed-nonce',
    userAgent: 'iot-batch-watcher',
  });
  return {
    call: async () => {
      const res = await pool.request({ path: req.path, method: 'POST', headers: req.headers });
      // SignatureNonceUsed from the second request on (the very first one is accepted).
      const body = JSON.parse(await res.body.text()) as { RequestId?: string };
      if (typeof body.RequestId !== 'string') throw new Error('unexpected floor answer');
    },
    close: () => pool.close(),
  };
}

/** Runs benchmark 1. */
export async function benchClients(options: ClientBenchOptions = {}): Promise<ClientBenchResult> {
  const levels = options.concurrency ?? [1, 16, 64];
  const rounds = options.rounds ?? 3;
  const perRun = options.requestsPerRun ?? ((c: number) => (c === 1 ? 2000 : 4000));
  const warmup = options.warmup ?? 500;
  const code = options.code ?? 'dist';
  const modules = await loadOurModules(code);
  const sim = await startSimulatorChild();
  subscribe('net.client.socket', onSocket);
  const ours = ourClient(sim.info, modules);
  const sdk = sdkClient(sim.info);
  const floor = floorClient(sim.info);
  const out: ClientBenchLevel[] = [];
  try {
    for (const c of levels) {
      const wo = await runOnce(ours.call, warmup, c);
      const ws = await runOnce(sdk.call, warmup, c);
      const wf = await runOnce(floor.call, warmup, c);
      const o: RunSample[] = [];
      const s: RunSample[] = [];
      const f: RunSample[] = [];
      for (let r = 0; r < rounds; r += 1) {
        const n = perRun(c);
        // Alternate the order: ours, sdk, floor / sdk, ours, floor / ...
        if (r % 2 === 0) {
          o.push(await runOnce(ours.call, n, c));
          s.push(await runOnce(sdk.call, n, c));
        } else {
          s.push(await runOnce(sdk.call, n, c));
          o.push(await runOnce(ours.call, n, c));
        }
        f.push(await runOnce(floor.call, n, c));
      }
      const ro = aggregate(o, wo);
      const rs = aggregate(s, ws);
      const rf = aggregate(f, wf);
      out.push({
        concurrency: c,
        ours: ro,
        sdk: rs,
        floor: rf,
        cpuEfficiencyRatio: ro.requestsPerCpuSec / rs.requestsPerCpuSec,
        throughputRatio: ro.requestsPerSec / rs.requestsPerSec,
        overheadRatio: (rs.cpuMsPerRequest - rf.cpuMsPerRequest) / (ro.cpuMsPerRequest - rf.cpuMsPerRequest),
        floorRatio: ro.cpuMsPerRequest / rf.cpuMsPerRequest,
        sdkFloorRatio: rs.cpuMsPerRequest / rf.cpuMsPerRequest,
      });
    }
  } finally {
    unsubscribe('net.client.socket', onSocket);
    await ours.close();
    await sdk.close();
    await floor.close();
    await sim.stop();
  }
  const minRatio = Math.min(...out.map((l) => l.cpuEfficiencyRatio));
  const maxFloor = Math.max(...out.map((l) => l.floorRatio));
  return {
    levels: out,
    rounds,
    simulator: 'separate child process, QPS limits off',
    minCpuEfficiencyRatio: minRatio,
    target: { cpuEfficiencyRatio: 3, met: minRatio >= 3 },
    maxFloorRatio: maxFloor,
    floorTarget: { floorRatio: 1.2, met: maxFloor <= 1.2 },
    code,
  };
}
