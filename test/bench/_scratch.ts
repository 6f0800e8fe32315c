import { benchScale } from './scale-bench.js';
const t = Date.now();
const r = await benchScale({ batches: Number(process.argv[2] ?? 2000), pollMs: 15000 });
console.log(JSON.stringify(r, null, 1));
console.log('took', Date.now() - t);
