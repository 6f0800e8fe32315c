/**
 * Issue #13.1: a webhook delivery attempt ends by its TOTAL deadline (`output.webhook.timeout`) whatever the
 * receiver does; a receiver that sends headers and then one byte per tick must not hold it. The connection is
 * destroyed and the attempt is a retryable failure.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { createSeededRandom } from '../../../src/core/clock.js';
import { createWebhookSink } from '../../../src/sinks/webhook.js';
import { captureLogger, createInstantClock, makeEvent } from '../../unit/sinks/helpers.js';
import type { DripServer } from '../../helpers/drip-server.js';
import { startDripServer } from '../../helpers/drip-server.js';

const TIMEOUT_MS = 1000;
const SLACK_MS = 1000;

let dir: string;
let server: DripServer;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ibw-webhook-drip-'));
});
afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('webhook total deadline against a dripping receiver', () => {
  it.each([200, 503])('HTTP %i headers then a byte per 200 ms: every attempt is cut at the deadline and the delivery rejects', async (status) => {
    server = await startDripServer({ dripMs: 200, status });
    const log = captureLogger();
    const sink = createWebhookSink({
      url: `${server.url}/hook`,
      secret: 'whsec-drip-0123456789',
      timeoutMs: TIMEOUT_MS,
      deadLetterFile: path.join(dir, 'dead-letter.jsonl'),
      // The instant clock skips the retry delays; the deadline runs on real timers.
      clock: createInstantClock(),
      random: createSeededRandom(1),
      logger: log.logger,
      maxAttempts: 2,
    });
    const t0 = performance.now();
    const err = await sink.deliver(makeEvent()).then(
      () => null,
      (e: unknown) => e,
    );
    const ms = performance.now() - t0;
    await sink.close();
    expect(err).toMatchObject({ kind: 'sink', scope: 'attempt', code: 'WebhookUnreachable' });
    expect((err as Error).message).toContain('timeout');
    expect(server.requests()).toBe(2);
    expect(ms).toBeLessThan(2 * TIMEOUT_MS + SLACK_MS);
    await new Promise((r) => setTimeout(r, 100));
    expect(server.open()).toBe(0);
    for (const c of server.connections.filter((x) => x.requests > 0)) {
      expect(c.closedAt! - c.requestAt!).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    }
    expect(server.connections.some((c) => c.bytes >= 2)).toBe(true);
    const lines = log.entries().filter((l) => l.msg === 'webhook delivery exceeded its deadline; connection closed');
    expect(lines).toHaveLength(2);
    expect(lines.every((l) => l.level === 30)).toBe(true);
  });
});
