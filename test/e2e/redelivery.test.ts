import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { readLedgerReadOnly } from '../../src/ledger/read-ledger.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';

const SECRET = 'whsec-redelivery-test-0123456789';

interface Received {
  id: string;
  type: string;
  applyId: string;
}

describe('kill -9 between "settled" and "delivered"', () => {
  let sim: SimulatorHandle | null = null;
  let server: Server | null = null;
  let dir = '';
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('after the restart the result file exists and the webhook gets the settled event (de-duplicable by id)', async () => {
    sim = await startSimulator({ port: 0, timeScale: 20 });
    sim.control.addBatch({ applyId: '9100001', productKey: 'a1SimProduct1', mode: 'random', count: 3 });
    dir = await mkdtemp(join(tmpdir(), 'ibw-redeliver-'));
    let holdSettled = true;
    const received: Received[] = [];
    let badSignatures = 0;
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const expected = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
        if (req.headers['x-ibw-signature'] !== expected) badSignatures += 1;
        const event = JSON.parse(body.toString()) as Received;
        expect(req.headers['x-ibw-event-id']).toBe(event.id);
        if (event.type === 'batch.settled' && holdSettled) return; // never answer: stays unacknowledged
        received.push(event);
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
        'polling: { initialDelay: 100ms, maxDelay: 500ms }',
        `state: { dir: ${join(dir, 'state')} }`,
        `output: { resultsDir: ${join(dir, 'results')}, webhook: { url: "${url}", timeout: 60s } }`,
        'http: { listen: "off" }',
        'batches:',
        '  - { applyId: "9100001", productKey: a1SimProduct1 }',
        '',
      ].join('\n'),
    );
    const env = { ...SIM_ENV, IBW_WEBHOOK_SECRET: SECRET };
    const first = runCli(['run', '--config', configFile], env);
    await first.waitFor(/batch\.settled a1SimProduct1\/9100001/);
    // Settled in the ledger, result written, webhook delivery of batch.settled still hanging.
    const before = await readLedgerReadOnly(join(dir, 'state'));
    expect(before.batches.get('a1SimProduct1/9100001')?.state).toBe('settled');
    const pending = [...before.outbox.values()].filter((e) => e.event.type === 'batch.settled');
    expect(pending).toHaveLength(1);
    expect(pending[0]!.acked).not.toContain('webhook');
    first.proc.kill('SIGKILL');
    await first.exited;
    expect(existsSync(join(dir, 'results', 'a1SimProduct1', '9100001.json'))).toBe(true);
    expect(received.some((e) => e.type === 'batch.settled')).toBe(false);

    holdSettled = false;
    const second = runCli(['run', '--config', configFile], env);
    await second.waitFor(/iot-batch-watcher running/);
    const deadline = Date.now() + 15_000;
    while (!received.some((e) => e.type === 'batch.settled') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    second.proc.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);

    const settled = received.filter((e) => e.type === 'batch.settled');
    expect(settled).toHaveLength(1);
    expect(settled[0]!.id).toBe(pending[0]!.event.id);
    expect(badSignatures).toBe(0);
    // Every event arrived at least once; by id there are no gaps.
    const ids = new Set(received.map((e) => e.id));
    expect([...ids].some((id) => id.includes(':added:'))).toBe(true);
    const after = await readLedgerReadOnly(join(dir, 'state'));
    expect(after.outbox.size).toBe(0);
  }, 60_000);
});
