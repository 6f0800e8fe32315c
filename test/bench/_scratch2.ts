import { startSimulatorChild } from './sim-child.js';
import { createIotApi } from '../../src/alibaba/iot-api.js';
import { createRpcClient } from '../../src/alibaba/rpc-client.js';
const sim = await startSimulatorChild();
const info = sim.info;
const rpc = createRpcClient({ endpoint: info.url, credentials: { get: async () => ({ accessKeyId: 'SimAccessKeyId', accessKeySecret: 'SimAccessKeySecret', securityToken: null }) }, maxAttempts: 1 });
const api = createIotApi({ rpc });
const target = { productKey: info.productKey, applyId: info.applyId, iotInstanceId: null };
const conc = Number(process.argv[2] ?? 64);
for (const n of [2000, 20000]) {
  let next = 0;
  const c0 = process.cpuUsage(); const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => { while (next < n) { next++; await api.queryBatchRegisterDeviceStatus(target); } }));
  const c = process.cpuUsage(c0);
  console.log(n, 'wall', performance.now() - t0, 'cpu us/req', (c.user + c.system) / n);
}
await rpc.close(); await sim.stop();
