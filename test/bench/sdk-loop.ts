/**
 * The peer of the real-path benchmark: the program a user would write instead of running the daemon. It polls
 * a list of ApplyIds with the official SDK (`@alicloud/iot20180120`), each batch on a fixed interval, and keeps
 * its state in one JSON file written at most once a second (only when something changed).
 *
 * It is deliberately plain: one async loop per batch (`await query; await sleep(interval)`), starts staggered
 * over one interval so the rate is even, no budget, no retries beyond the next interval, `fs.writeFile` +
 * `rename` for the state file (no fsync: what a typical script does).
 *
 * Run by real-path-bench.ts after transpiling it to plain JavaScript (so Node runs it without a loader, like the
 * built daemon); configured through the environment:
 *   SDK_LOOP_ENDPOINT     host:port of the simulator
 *   SDK_LOOP_BATCHES      JSON array of {"productKey", "applyId"}
 *   SDK_LOOP_INTERVAL_MS  poll interval per batch
 *   SDK_LOOP_STATE        path of the JSON state file
 *   ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET   passed explicitly to the SDK Config
 * Prints `sdk-loop ready` once every loop runs; on SIGTERM it writes the state and exits 0.
 */
import * as IotNs from '@alicloud/iot20180120';
import * as OpenApiNs from '@alicloud/openapi-client';
import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';

// NOTE: both packages are CommonJS; under ESM the client class may sit one `default` deeper.
type Loose = Record<string, unknown> & { default?: Loose };
interface SdkClient {
  queryBatchRegisterDeviceStatus(request: unknown): Promise<{ body?: { success?: boolean; data?: { status?: string }; code?: string } }>;
}
const iotNs = IotNs as unknown as Loose;
const openApiNs = OpenApiNs as unknown as Loose;
const Client = (iotNs.default?.default ?? iotNs.default) as unknown as new (config: unknown) => SdkClient;
const Config = (openApiNs.Config ?? openApiNs.default?.Config) as new (init: Record<string, unknown>) => unknown;
const Request = (iotNs.QueryBatchRegisterDeviceStatusRequest ?? iotNs.default?.QueryBatchRegisterDeviceStatusRequest) as new (
  init: Record<string, unknown>,
) => unknown;

interface BatchState {
  productKey: string;
  applyId: string;
  status: string | null;
  polls: number;
  lastPolledAt: string | null;
  lastError: string | null;
  done: boolean;
}

const FINAL = new Set(['CHECK_FAILED', 'CREATE_SUCCESS', 'CREATE_FAILED']);

const env = process.env;
const endpoint = env.SDK_LOOP_ENDPOINT ?? '127.0.0.1:8787';
const intervalMs = Number(env.SDK_LOOP_INTERVAL_MS ?? '12000');
const statePath = env.SDK_LOOP_STATE ?? 'sdk-loop-state.json';
const wanted = JSON.parse(env.SDK_LOOP_BATCHES ?? '[]') as { productKey: string; applyId: string }[];

// Resume from the state file when there is one.
let saved: Record<string, BatchState>;
try {
  saved = JSON.parse(readFileSync(statePath, 'utf8')) as Record<string, BatchState>;
} catch {
  saved = {};
}
const state: Record<string, BatchState> = {};
for (const b of wanted) {
  const key = `${b.productKey}/${b.applyId}`;
  state[key] = saved[key] ?? { ...b, status: null, polls: 0, lastPolledAt: null, lastError: null, done: false };
}

const client = new Client(
  new Config({
    accessKeyId: env.ALIBABA_CLOUD_ACCESS_KEY_ID,
    accessKeySecret: env.ALIBABA_CLOUD_ACCESS_KEY_SECRET,
    endpoint,
    protocol: 'HTTP',
    regionId: 'cn-shanghai',
  }),
);

let dirty = false;
let writing: Promise<void> = Promise.resolve();
async function saveState(): Promise<void> {
  if (!dirty) return;
  dirty = false;
  const tmp = `${statePath}.tmp`;
  await writeFile(tmp, JSON.stringify(state));
  await rename(tmp, statePath);
}
const saver = setInterval(() => {
  writing = writing.then(saveState, saveState);
}, 1000);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let stopping = false;

async function watch(b: BatchState, startAfterMs: number): Promise<void> {
  await sleep(startAfterMs);
  while (!b.done && !stopping) {
    try {
      const res = await client.queryBatchRegisterDeviceStatus(new Request({ productKey: b.productKey, applyId: Number(b.applyId) }));
      b.status = res.body?.data?.status ?? null;
      b.lastError = null;
      if (b.status !== null && FINAL.has(b.status)) b.done = true;
    } catch (err) {
      b.lastError = err instanceof Error ? err.message : String(err);
    }
    b.polls += 1;
    b.lastPolledAt = new Date().toISOString();
    dirty = true;
    await sleep(intervalMs);
  }
}

const batches = Object.values(state);
const loops = batches.map((b, i) => watch(b, Math.floor((i * intervalMs) / Math.max(1, batches.length))));
process.stdout.write('sdk-loop ready\n');

process.once('SIGTERM', () => {
  stopping = true;
  clearInterval(saver);
  dirty = true;
  void writing.then(saveState, saveState).then(() => process.exit(0));
});
await Promise.all(loops);
