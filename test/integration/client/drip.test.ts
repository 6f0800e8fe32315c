/**
 * Issue #13.1: a request ends by its TOTAL deadline (`requestTimeoutMs`) whatever the server does. The drip server
 * sends headers and then one body byte per second (undici's inactivity timeouts never fire); every request must
 * be closed, connection included, within requestTimeout + 1 s, and count as a transient Transport.Timeout.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { RpcClient } from '../../../src/alibaba/rpc-client.js';
import { createRpcClient } from '../../../src/alibaba/rpc-client.js';
import { ApiError } from '../../../src/alibaba/errors.js';
import type { DripServer } from '../../helpers/drip-server.js';
import { startDripServer } from '../../helpers/drip-server.js';
import { captureLogger, testOptions } from './helpers.js';

const TIMEOUT_MS = 1000;
const SLACK_MS = 1000;

let server: DripServer;
let client: RpcClient | null = null;

beforeEach(async () => {
  server = await startDripServer({ dripMs: 200 });
});
afterEach(async () => {
  await client?.destroy();
  client = null;
  await server.close();
});

async function timed<T>(p: Promise<T>): Promise<{ ms: number; err: unknown }> {
  const t0 = performance.now();
  try {
    await p;
    return { ms: performance.now() - t0, err: null };
  } catch (err) {
    return { ms: performance.now() - t0, err };
  }
}

describe('total request deadline against a dripping server', () => {
  it('closes every concurrent request, and its connection, within requestTimeout + 1 s as Transport.Timeout', async () => {
    const log = captureLogger('info');
    const opts = testOptions(server.url, { requestTimeoutMs: TIMEOUT_MS, maxAttempts: 1, connectionsPerEndpoint: 4, logger: log.logger });
    client = createRpcClient(opts);
    // 8 calls on 4 connections: the last four wait for a connection, and the deadline covers that wait too.
    const results = await Promise.all(Array.from({ length: 8 }, () => timed(client!.call('QueryBatchRegisterDeviceStatus', { ApplyId: '1' }))));
    for (const r of results) {
      expect(r.err).toBeInstanceOf(ApiError);
      const e = r.err as ApiError;
      expect(['Transport.Timeout', 'Transport.ConnectTimeout']).toContain(e.code);
      expect(e).toMatchObject({ kind: 'transient', scope: 'attempt' });
      expect(r.ms).toBeLessThan(TIMEOUT_MS + SLACK_MS);
      expect(r.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    }
    // Every request that reached the server was sent: Transport.Timeout (one sent just before its deadline may be
    // cut before the server reads it); those still queued at their deadline never left (Transport.ConnectTimeout).
    const sent = results.filter((r) => (r.err as ApiError).code === 'Transport.Timeout').length;
    expect(server.requests()).toBeLessThanOrEqual(sent);
    expect(server.requests()).toBeGreaterThanOrEqual(4);
    // Every connection that carried a request was closed within the deadline + slack of that request.
    await new Promise((r) => setTimeout(r, 100));
    expect(server.open()).toBe(0);
    for (const c of server.connections.filter((x) => x.requests > 0)) expect(c.closedAt! - c.requestAt!).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    // The body had started dripping (so inactivity timeouts would never have fired).
    expect(server.connections.some((c) => c.bytes >= 2)).toBe(true);
    // Visible: an info line per deadline, naming the code; nothing at warn.
    const deadlines = log.lines.filter((l) => l.msg === 'alibaba api request exceeded its deadline; connection closed');
    expect(deadlines.length).toBe(8);
    expect(deadlines.every((l) => l.level === 30)).toBe(true);
    expect(log.lines.filter((l) => (l.level as number) >= 40)).toEqual([]);
    expect(opts.attempts.map((a) => a.outcome)).toEqual(Array(8).fill('transient'));
  });

  it('retries a timed-out attempt (transient) and every attempt still ends at its own deadline', async () => {
    const opts = testOptions(server.url, { requestTimeoutMs: TIMEOUT_MS, maxAttempts: 3 });
    client = createRpcClient(opts);
    const r = await timed(client.call('QueryBatchRegisterDeviceStatus', { ApplyId: '1' }));
    expect((r.err as ApiError).code).toBe('Transport.Timeout');
    expect(opts.attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(r.ms).toBeLessThan(3 * TIMEOUT_MS + SLACK_MS);
    expect(server.requests()).toBe(3);
    await new Promise((r2) => setTimeout(r2, 100));
    expect(server.open()).toBe(0);
    for (const c of server.connections.filter((x) => x.requests > 0)) expect(c.closedAt! - c.requestAt!).toBeLessThan(TIMEOUT_MS + SLACK_MS);
  });

  it('a non-idempotent call that timed out after sending is not resent', async () => {
    const opts = testOptions(server.url, { requestTimeoutMs: TIMEOUT_MS, maxAttempts: 3 });
    client = createRpcClient(opts);
    const r = await timed(client.call('BatchRegisterDevice', { ProductKey: 'pk', Count: '5' }, { idempotent: false }));
    expect((r.err as ApiError).code).toBe('Transport.Timeout');
    expect(server.requests()).toBe(1);
  });
});
