import { request as httpRequest, Agent } from 'node:http';

import { afterEach, describe, expect, it } from 'vitest';

import { startOpsServer } from '../../../src/ops/http-server.js';
import type { OpsServer, OpsServerOptions } from '../../../src/ops/http-server.js';
import { createMetrics } from '../../../src/ops/metrics.js';
import { createCaptureLogger } from '../../unit/ops/capture-logger.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(url: string, method = 'GET', agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const servers: OpsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(overrides: Partial<OpsServerOptions> = {}) {
  const { logger, lines } = createCaptureLogger();
  const metrics = createMetrics({ collectDefault: false });
  const server = await startOpsServer({
    host: '127.0.0.1',
    port: 0,
    metrics,
    isReady: () => true,
    listBatches: () => [],
    logger,
    ...overrides,
  });
  servers.push(server);
  return { server, metrics, lines };
}

describe('startOpsServer', () => {
  it('listens on loopback with the port it got', async () => {
    const { server } = await start();
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
  });

  it('GET /healthz answers 200 ok', async () => {
    const { server } = await start();
    const reply = await call(`${server.url}/healthz`);
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('ok\n');
    expect(reply.headers['content-type']).toMatch(/^text\/plain/);
  });

  it('GET /readyz flips between 200 and 503 with isReady()', async () => {
    let ready = false;
    const { server } = await start({ isReady: () => ready });
    expect((await call(`${server.url}/readyz`)).status).toBe(503);
    ready = true;
    const reply = await call(`${server.url}/readyz?verbose=1`);
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('ready\n');
    ready = false;
    expect((await call(`${server.url}/readyz`)).status).toBe(503);
  });

  it('GET /readyz is 503 when isReady throws', async () => {
    const { server, lines } = await start({
      isReady: () => {
        throw new Error('boom');
      },
    });
    expect((await call(`${server.url}/readyz`)).status).toBe(503);
    expect(lines.some((l) => l.msg === 'readiness check failed')).toBe(true);
  });

  it('GET /metrics serves the Prometheus text with its content type', async () => {
    const { server, metrics } = await start();
    metrics.recordConfigReload('ok');
    const reply = await call(`${server.url}/metrics`);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe(metrics.contentType);
    expect(reply.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(reply.body).toContain('ibw_config_reloads_total{outcome="ok"} 1');
    expect(reply.body).toContain('# TYPE ibw_api_requests_total counter');
  });

  it('GET /v1/batches returns the JSON array from listBatches (sync or async)', async () => {
    const batches = [
      { applyId: '9007199254740993', productKey: 'a1SimProduct1', name: null, status: 'CHECK', outcome: null, polls: 2 },
    ];
    const { server } = await start({ listBatches: async () => batches });
    const reply = await call(`${server.url}/v1/batches`);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(reply.body)).toEqual(batches);

    const sync = await start({ listBatches: () => [] });
    expect(JSON.parse((await call(`${sync.server.url}/v1/batches/`)).body)).toEqual([]);
  });

  it('a failing listBatches gives 500 JSON without the message or stack, and the error is logged', async () => {
    const { server, lines } = await start({
      listBatches: () => {
        throw new Error('ledger exploded: AccessKeySecret=hunter2');
      },
    });
    const reply = await call(`${server.url}/v1/batches`);
    expect(reply.status).toBe(500);
    expect(JSON.parse(reply.body)).toEqual({ error: 'internal error' });
    expect(reply.body).not.toContain('hunter2');
    expect(reply.body).not.toContain('at ');
    expect(lines.some((l) => l.msg === 'listing batches failed' && l.level === 50)).toBe(true);

    const rejecting = await start({ listBatches: () => Promise.reject(new Error('async boom')) });
    expect((await call(`${rejecting.server.url}/v1/batches`)).status).toBe(500);
    // The server keeps serving after a failure.
    expect((await call(`${server.url}/healthz`)).status).toBe(200);
  });

  it('unknown paths get 404 JSON', async () => {
    const { server } = await start();
    const reply = await call(`${server.url}/nope`);
    expect(reply.status).toBe(404);
    expect(reply.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(reply.body)).toEqual({ error: 'not found' });
    expect((await call(`${server.url}/`)).status).toBe(404);
  });

  it('methods other than GET/HEAD get 405 with Allow', async () => {
    const { server } = await start();
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const reply = await call(`${server.url}/healthz`, method);
      expect(reply.status).toBe(405);
      expect(reply.headers.allow).toBe('GET, HEAD');
      expect(JSON.parse(reply.body)).toMatchObject({ error: 'method not allowed' });
    }
    const head = await call(`${server.url}/healthz`, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
  });

  it('close() closes idle keep-alive connections and returns promptly', async () => {
    const { server } = await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect((await call(`${server.url}/healthz`, 'GET', agent)).status).toBe(200);
      const sockets = Object.values(agent.freeSockets).flat();
      expect(sockets).toHaveLength(1); // a keep-alive connection is open and idle
      const socketClosed = new Promise<void>((resolve) => sockets[0]!.once('close', () => resolve()));
      const t0 = performance.now();
      await server.close();
      await socketClosed;
      expect(performance.now() - t0).toBeLessThan(2000);
      await expect(call(`${server.url}/healthz`)).rejects.toThrow(/ECONNREFUSED/);
      await server.close(); // idempotent
    } finally {
      agent.destroy();
    }
  });

  it('close() does not wait for a request in flight (a stuck listBatches)', async () => {
    const { server } = await start({ listBatches: () => new Promise<unknown[]>(() => undefined) });
    const pending = call(`${server.url}/v1/batches`);
    // Let the request reach the handler before closing.
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await server.close();
    expect(performance.now() - t0).toBeLessThan(2000);
    await expect(pending).rejects.toThrow(/socket hang up|ECONNRESET/);
  });

  it('rejects when the port is taken', async () => {
    const { server } = await start();
    const { logger } = createCaptureLogger();
    await expect(
      startOpsServer({
        host: '127.0.0.1',
        port: server.port,
        metrics: createMetrics({ collectDefault: false }),
        isReady: () => true,
        listBatches: () => [],
        logger,
      }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});
