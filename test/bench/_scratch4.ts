import { openFileLedger } from '../../src/ledger/file-ledger.js';
const l = await openFileLedger({ dir: '/tmp/ibw-restart/state' });
const s = await l.load();
console.log('batches', s.batches.size, 'outbox', s.outbox.size);
const types = new Map(); for (const e of s.outbox.values()) types.set(e.event.type, (types.get(e.event.type) ?? 0) + 1);
console.log(types);
await l.close();
