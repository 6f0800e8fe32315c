import { createHmac } from 'node:crypto';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { readLedgerReadOnly } from '../../src/ledger/read-ledger.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';

const SECRET = 'whsec-redeliver-e2e-0123456789abcdef';

interface Hit {
  id: string;
  type: string;
  body: string;
  signature: string;
  validSignature: boolean;
  answered: number;
}

describe('redeliver', () => {
  let sim: SimulatorHandle | null = null;
  let server: Server | null = null;
  let dir = '';
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('replays every dead letter once more, byte for byte with a valid signature, and not again on a second run', async () => {
    sim = await startSimulator({ port: 0, timeScale: 20 });
    sim.control.addBatch({ applyId: '9200001', productKey: 'a1SimProduct1', mode: 'random', count: 2 });
    dir = await mkdtemp(join(tmpdir(), 'ibw-redeliver-cmd-'));
    let refuse = true;
    const hits: Hit[] = [];
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const event = JSON.parse(body) as { id: string; type: string };
        const signature = String(req.headers['x-ibw-signature']);
        const answered = refuse ? 422 : 200;
        hits.push({
          id: event.id,
          type: event.type,
          body,
          signature,
          validSignature: signature === `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
          answered,
        });
        res.writeHead(answered).end(refuse ? 'schema mismatch' : 'ok');
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
        `output: { resultsDir: ${join(dir, 'results')}, webhook: { url: "${url}", timeout: 10s } }`,
        'http: { listen: "off" }',
        'batches:',
        '  - { applyId: "9200001", productKey: a1SimProduct1 }',
        '',
      ].join('\n'),
    );
    const env = { ...SIM_ENV, IBW_WEBHOOK_SECRET: SECRET };
    const daemon = runCli(['run', '--config', configFile], env);
    await daemon.waitFor(/batch\.settled a1SimProduct1\/9200001/);
    const deadline = Date.now() + 15_000;
    while (!hits.some((h) => h.type === 'batch.settled') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));

    // While the daemon holds the state directory, redeliver refuses and names the lock.
    const busy = runCli(['redeliver', '--all', '--config', configFile], env);
    expect((await busy.exited).code).toBe(1);
    expect(busy.stderr.join('')).toContain(join(dir, 'state', 'LOCK'));

    daemon.proc.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
    const refused = hits.filter((h) => h.answered === 422);
    expect(refused.length).toBeGreaterThanOrEqual(3); // added, status changes, settled
    const letters = (await readFile(join(dir, 'state', 'dead-letter.jsonl'), 'utf8')).trim().split('\n');
    expect(letters).toHaveLength(refused.length);

    refuse = false;
    const replay = runCli(['redeliver', '--all', '--config', configFile], env);
    const replayExit = await replay.exited;
    expect(replayExit.code, replay.stderr.join('')).toBe(0);
    expect(replay.stdout.join('\n')).toContain(`${refused.length} dead letter(s) replayed: ${refused.length} delivered, 0 refused again`);
    const accepted = hits.filter((h) => h.answered === 200);
    expect(accepted.map((h) => h.id).sort()).toEqual(refused.map((h) => h.id).sort());
    for (const a of accepted) {
      const original = refused.find((r) => r.id === a.id)!;
      expect(a.validSignature).toBe(true);
      expect(a.body).toBe(original.body);
      expect(a.signature).toBe(original.signature);
    }

    // A second run sends nothing.
    const again = runCli(['redeliver', '--all', '--config', configFile], env);
    expect((await again.exited).code).toBe(0);
    expect(again.stderr.join('')).toContain('nothing to replay');
    const one = runCli(['redeliver', '--event-id', refused[0]!.id, '--config', configFile], env);
    expect((await one.exited).code).toBe(0);
    expect(one.stderr.join('')).toContain('already replayed');
    expect(hits.filter((h) => h.answered === 200)).toHaveLength(refused.length);

    const list = runCli(['redeliver', '--list', '--config', configFile], env);
    expect((await list.exited).code).toBe(0);
    expect(list.stdout).toHaveLength(refused.length);
    for (const line of list.stdout) expect(line).toMatch(/HTTP 422 {2}replayed \d{4}-/);
    const ledger = await readLedgerReadOnly(join(dir, 'state'));
    expect(ledger.outbox.size).toBe(0);
    const unknown = runCli(['redeliver', '--event-id', 'no-such-id', '--config', configFile], env);
    expect((await unknown.exited).code).toBe(1);
  }, 90_000);
});
