/**
 * The transport floor of the real-path benchmark: the least a Node program must do to send the same status polls
 * at the same rate. Each request is V3-signed (the daemon's own `buildSignedRequest`, from dist/) and sent with
 * undici's lowest-level API (`Pool.dispatch` with a handler that collects the chunks; keep-alive), the answer
 * `JSON.parse`d. No state, no budget, no metrics, no logging, no error handling beyond counting. Whatever the daemon
 * spends above this per poll is its own.
 *
 * Two ways to time the polls (FLOOR_TICK_MS):
 * - 0: one loop per batch (`await poll; await sleep(interval)`, like sdk-loop.ts): one wake-up per poll;
 * - N > 0: one timer every N ms sends every poll due by then, as the daemon's dispatch tick does (DISPATCH_TICK_MS,
 *   100 ms): a few polls per wake-up. This is the floor for a client that groups its polls like the daemon.
 *
 * Run by real-path-bench.ts after transpiling it to plain JavaScript (data/bench/floor-loop.mjs); configured
 * through the environment: FLOOR_ENDPOINT (http://host:port), FLOOR_BATCHES (JSON array of {productKey, applyId}),
 * FLOOR_INTERVAL_MS, FLOOR_TICK_MS (default 0), FLOOR_BURST (tick 0 only: loops start in groups of this many),
 * FLOOR_DIST (absolute path of dist/), ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET.
 * Prints `floor-loop ready` once every loop runs; exits 0 on SIGTERM.
 */
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

import { Pool, type Dispatcher } from 'undici';

interface Built {
  path: string;
  headers: Record<string, string>;
}
type Sign = (input: Record<string, unknown>) => Built;

const env = process.env;
const endpoint = new URL(env.FLOOR_ENDPOINT ?? 'http://127.0.0.1:8787');
const intervalMs = Number(env.FLOOR_INTERVAL_MS ?? '12000');
const burst = Math.max(1, Number(env.FLOOR_BURST ?? '1'));
const tickMs = Math.max(0, Number(env.FLOOR_TICK_MS ?? '0'));
const batches = JSON.parse(env.FLOOR_BATCHES ?? '[]') as { productKey: string; applyId: string }[];
const dist = env.FLOOR_DIST ?? 'dist';
const { buildSignedRequest } = (await import(pathToFileURL(`${dist}/alibaba/rpc-client.js`).href)) as { buildSignedRequest: Sign };
const { formatTimestamp } = (await import(pathToFileURL(`${dist}/alibaba/sign-v1.js`).href)) as { formatTimestamp: (ms: number) => string };
const credentials = { accessKeyId: env.ALIBABA_CLOUD_ACCESS_KEY_ID ?? '', accessKeySecret: env.ALIBABA_CLOUD_ACCESS_KEY_SECRET ?? '', securityToken: null };

const pool = new Pool(endpoint.origin, { connections: 16, keepAliveTimeout: 4000 });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let stopping = false;
let failures = 0;

/** One signed status poll; resolves when its answer is read and parsed (never rejects: failures are counted). */
function poll(b: { productKey: string; applyId: string }): Promise<void> {
  const req = buildSignedRequest({
    signatureVersion: 'v3',
    action: 'QueryBatchRegisterDeviceStatus',
    version: '2018-01-20',
    params: { ApplyId: b.applyId, ProductKey: b.productKey },
    host: endpoint.host,
    credentials,
    timestamp: formatTimestamp(Date.now()),
    nonce: randomUUID(),
    userAgent: 'floor-loop',
  });
  return new Promise<void>((resolve) => {
    const chunks: Buffer[] = [];
    // NOTE: undici tells the new handler API from the legacy one by these methods, so they are here even as no-ops.
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart() {},
      onResponseStart() {},
      onResponseData(_c, chunk) {
        chunks.push(chunk);
      },
      onResponseEnd() {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { Success?: boolean };
          if (body.Success !== true) failures += 1;
        } catch {
          failures += 1;
        }
        resolve();
      },
      onResponseError() {
        failures += 1;
        resolve();
      },
    };
    pool.dispatch({ path: req.path, method: 'POST', headers: req.headers }, handler);
  });
}

async function watch(b: { productKey: string; applyId: string }, startAfterMs: number): Promise<void> {
  await sleep(startAfterMs);
  while (!stopping) {
    await poll(b);
    await sleep(intervalMs);
  }
}

/** Tick mode: each batch is due every interval (staggered over the first one); every tick sends what is due. */
function ticking(): Promise<void> {
  const t0 = Date.now();
  const due = batches.map((_, i) => t0 + Math.floor((i * intervalMs) / Math.max(1, batches.length)));
  return new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (stopping) {
        clearInterval(timer);
        resolve();
        return;
      }
      const now = Date.now();
      for (let i = 0; i < batches.length; i += 1) {
        if ((due[i] as number) > now) continue;
        due[i] = now + intervalMs;
        void poll(batches[i] as { productKey: string; applyId: string });
      }
    }, tickMs);
  });
}

const loops =
  tickMs > 0 ? [ticking()] : batches.map((b, i) => watch(b, Math.floor((Math.floor(i / burst) * burst * intervalMs) / Math.max(1, batches.length))));
process.stdout.write('floor-loop ready\n');
process.once('SIGTERM', () => {
  stopping = true;
  process.stderr.write(`floor-loop: ${failures} failed polls\n`);
  void pool.close().then(() => process.exit(0));
});
await Promise.all(loops);
