// A/B: our client vs the bare-undici floor (same signed bytes, fixed), alternating, medians of CPU µs/req.
const root = process.argv[2]!;
const levels = (process.argv[3] ?? '1,16,64').split(',').map(Number);
const rounds = Number(process.argv[4] ?? 5);
const { startSimulatorChild } = await import(`${root}/test/bench/sim-child.ts`);
const { createRpcClient, buildSignedRequest, IOT_API_VERSION } = await import(`${root}/src/alibaba/rpc-client.ts`);
const { createIotApi } = await import(`${root}/src/alibaba/iot-api.ts`);
const { formatTimestamp } = await import(`${root}/src/alibaba/sign-v1.ts`);
const { Pool } = await import('undici');
const sim = await startSimulatorChild();
const url = new URL(sim.info.url);
const creds = { accessKeyId: 'SimAccessKeyId', accessKeySecret: 'SimAccessKeySecret', securityToken: null };
const rpc = createRpcClient({ endpoint: sim.info.url, credentials: { get: async () => creds }, signatureVersion: 'v3', maxAttempts: 1 });
const api = createIotApi({ rpc });
const target = { productKey: sim.info.productKey, applyId: sim.info.applyId, iotInstanceId: null };
const ours = async () => { const r = await api.queryBatchRegisterDeviceStatus(target); if (r.status !== 'CREATE') throw new Error('bad'); };
const pool = new Pool(url.origin, { connections: 16, keepAliveTimeout: 4000 });
const req = buildSignedRequest({ signatureVersion: 'v3', action: 'QueryBatchRegisterDeviceStatus', version: IOT_API_VERSION, params: { ProductKey: sim.info.productKey, ApplyId: sim.info.applyId }, host: url.host, credentials: creds, timestamp: formatTimestamp(Date.now()), nonce: 'bench-floor-fixed-nonce', userAgent: 'iot-batch-watcher' });
const floor = async () => { const res = await pool.request({ path: req.path, method: 'POST', headers: req.headers }); const b = JSON.parse(await res.body.text()); if (typeof b.RequestId !== 'string') throw new Error('bad'); };
async function run(call: () => Promise<void>, n: number, c: number): Promise<number> {
  let next = 0; const s = process.cpuUsage();
  await Promise.all(Array.from({ length: c }, async () => { while (next < n) { next++; await call(); } }));
  const d = process.cpuUsage(s); return (d.user + d.system) / n;
}
const med = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]!; };
for (const c of levels) {
  const n = c === 1 ? 2000 : 4000;
  await run(ours, 500, c); await run(floor, 500, c);
  const o: number[] = [], f: number[] = [];
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) { o.push(await run(ours, n, c)); f.push(await run(floor, n, c)); } else { f.push(await run(floor, n, c)); o.push(await run(ours, n, c)); }
  }
  const ratios = o.map((x, i) => x / f[i]!);
  console.log(JSON.stringify({ root: root.includes('before') ? 'before' : 'after', c, oursUs: +med(o).toFixed(1), floorUs: +med(f).toFixed(1), ratioMedian: +med(ratios).toFixed(3), ratios: ratios.map((x) => +x.toFixed(2)) }));
}
await rpc.close(); await pool.close(); await sim.stop();
