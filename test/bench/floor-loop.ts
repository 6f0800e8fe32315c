/**
 * The transport floor of the real-path benchmark: the least a Node program must do to send the same status polls
 * at the same rate. One loop per batch (`await request; await sleep(interval)`, like sdk-loop.ts), each request
 * V3-signed (the daemon's own `buildSignedRequest`, from dist/) and sent on a bare undici `Pool` (keep-alive),
 * the answer read whole and `JSON.parse`d. No state, no budget, no metrics, no logging, no error handling beyond
 * counting. Whatever the daemon spends above this per poll is its own; below it, no client can go.
 *
 * Run by real-path-bench.ts after transpiling it to plain JavaScript (data/bench/floor-loop.mjs); configured
 * through the environment: FLOOR_ENDPOINT (http://host:port), FLOOR_BATCHES (JSON array of {productKey, applyId}),
 * FLOOR_INTERVAL_MS, FLOOR_DIST (absolute path of dist/), ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET.
 * Prints `floor-loop ready` once every loop runs; exits 0 on SIGTERM.
 */
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

import { Pool } from 'undici';

interface Built {
  path: string;
  headers: Record<string, string>;
}
type Sign = (input: Record<string, unknown>) => Built;

const env = process.env;
const endpoint = new URL(env.FLOOR_ENDPOINT ?? 'http://127.0.0.1:8787');
const intervalMs = Number(env.FLOOR_INTERVAL_MS ?? '12000');
const burst = Math.max(1, Number(env.FLOOR_BURST ?? '1'));
const batches = JSON.parse(env.FLOOR_BATCHES ?? '[]') as { productKey: string; applyId: string }[];
const dist = env.FLOOR_DIST ?? 'dist';
const { buildSignedRequest } = (await import(pathToFileURL(`${dist}/alibaba/rpc-client.js`).href)) as { buildSignedRequest: Sign };
const { formatTimestamp } = (await import(pathToFileURL(`${dist}/alibaba/sign-v1.js`).href)) as { formatTimestamp: (ms: number) => string };
const credentials = { accessKeyId: env.ALIBABA_CLOUD_ACCESS_KEY_ID ?? '', accessKeySecret: env.ALIBABA_CLOUD_ACCESS_KEY_SECRET ?? '', securityToken: null };

const pool = new Pool(endpoint.origin, { connections: 16, keepAliveTimeout: 4000 });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let stopping = false;
let failures = 0;

async function poll(b: { productKey: string; applyId: string }): Promise<void> {
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
  const res = await pool.request({ path: req.path, method: 'POST', headers: req.headers });
  const body = JSON.parse(await res.body.text()) as { Success?: boolean };
  if (body.Success !== true) failures += 1;
}

async function watch(b: { productKey: string; applyId: string }, startAfterMs: number): Promise<void> {
  await sleep(startAfterMs);
  while (!stopping) {
    try {
      await poll(b);
    } catch {
      failures += 1;
    }
    await sleep(intervalMs);
  }
}

const loops = batches.map((b, i) => watch(b, Math.floor((Math.floor(i / burst) * burst * intervalMs) / Math.max(1, batches.length))));
process.stdout.write('floor-loop ready\n');
process.once('SIGTERM', () => {
  stopping = true;
  process.stderr.write(`floor-loop: ${failures} failed polls\n`);
  void pool.close().then(() => process.exit(0));
});
await Promise.all(loops);
