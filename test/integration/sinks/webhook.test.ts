import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { nextDelayMs } from '../../../src/core/backoff.js';
import { createSeededRandom } from '../../../src/core/clock.js';
import { AbortedError, DaemonError } from '../../../src/errors.js';
import type { WatcherEvent } from '../../../src/events.js';
import { createWebhookSink, isLoopbackHost, parseRetryAfter, signWebhookBody } from '../../../src/sinks/webhook.js';
import type { WebhookSink, WebhookSinkOptions } from '../../../src/sinks/webhook.js';
import { captureLogger, createInstantClock, makeEvent } from '../../unit/sinks/helpers.js';
import type { CapturedLogger, RecordingClock } from '../../unit/sinks/helpers.js';

import { closedPort, startReceiver } from './receiver.js';
import type { Receiver } from './receiver.js';

const SECRET = 'whsec-test-0123456789abcdef';

let dir: string;
let receiver: Receiver;
let clock: RecordingClock;
let log: CapturedLogger;
const sinks: WebhookSink[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ibw-webhook-'));
  receiver = await startReceiver(SECRET);
  clock = createInstantClock();
  log = captureLogger();
});

afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  await receiver.close();
  await rm(dir, { recursive: true, force: true });
});

function makeSink(overrides: Partial<WebhookSinkOptions> = {}): WebhookSink {
  const sink = createWebhookSink({
    url: receiver.url,
    secret: SECRET,
    timeoutMs: 2000,
    deadLetterFile: path.join(dir, 'state', 'dead-letter.jsonl'),
    clock,
    random: createSeededRandom(7),
    logger: log.logger,
    ...overrides,
  });
  sinks.push(sink);
  return sink;
}

/** The logs never carry the secret or any signature we sent. */
function expectNoSecretsLogged(): void {
  const all = log.lines.join('\n');
  expect(all).not.toContain(SECRET);
  expect(all).not.toContain('sha256=');
  for (const r of receiver.requests) expect(all).not.toContain(String(r.headers['x-ibw-signature']).slice(7));
  expect(all).not.toContain('token=abc');
}

describe('webhook sink against a loopback receiver', () => {
  it('POSTs the event as JSON with a valid HMAC signature and id headers', async () => {
    const sink = makeSink();
    expect(sink.name).toBe('webhook');
    const event = makeEvent();
    await expect(sink.deliver(event)).resolves.toBeUndefined();
    expect(receiver.requests).toHaveLength(1);
    const req = receiver.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.signatureValid).toBe(true);
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers['x-ibw-event-id']).toBe(event.id);
    expect(req.headers['idempotency-key']).toBe(event.id);
    expect(req.headers['x-ibw-event-type']).toBe('batch.settled');
    expect(req.headers['x-ibw-signature']).toBe(signWebhookBody(SECRET, req.body));
    expect(req.body).toBe(JSON.stringify(event));
    expect(JSON.parse(req.body)).toEqual(event);
    expect(clock.sleeps).toEqual([]);
    expectNoSecretsLogged();
  });

  it('retries 5xx and 408 with backoff inside one deliver, then succeeds with the same bytes', async () => {
    receiver.script.push({ status: 500 }, { status: 503 }, { status: 408 });
    const sink = makeSink({ maxAttempts: 4, retryInitialMs: 100 });
    await expect(sink.deliverReport(makeEvent())).resolves.toBe('ok');
    expect(receiver.requests).toHaveLength(4);
    expect(new Set(receiver.requests.map((r) => r.body)).size).toBe(1);
    expect(new Set(receiver.requests.map((r) => r.headers['x-ibw-event-id'])).size).toBe(1);
    expect(receiver.requests.every((r) => r.signatureValid)).toBe(true);
    expect(clock.sleeps).toHaveLength(3);
    // The one jitter formula (core/backoff.ts): each delay in [retryInitialMs, cap], the cap doubling.
    [100, 200, 400].forEach((base, i) => {
      expect(clock.sleeps[i]).toBeGreaterThanOrEqual(100);
      expect(clock.sleeps[i]).toBeLessThanOrEqual(base);
    });
    expect(receiver.accepted).toEqual([makeEvent().id]);
    expectNoSecretsLogged();
  });

  it('draws its retry delays from the one jitter formula (core/backoff.ts nextDelayMs), same random, same delays', async () => {
    receiver.script.push({ status: 500 }, { status: 500 }, { status: 500 });
    const sink = makeSink({ maxAttempts: 4, retryInitialMs: 100, retryMaxMs: 5000, random: createSeededRandom(99) });
    await expect(sink.deliverReport(makeEvent())).resolves.toBe('ok');
    const same = createSeededRandom(99);
    const policy = { initialDelayMs: 100, maxDelayMs: 5000, multiplier: 2 };
    expect(clock.sleeps).toEqual([1, 2, 3].map((attempt) => nextDelayMs(policy, attempt, same)));
  });

  it('honours Retry-After on 429 (seconds), capped by retryAfterMaxMs', async () => {
    receiver.script.push({ status: 429, headers: { 'retry-after': '7' } }, { status: 429, headers: { 'retry-after': '3600' } });
    const sink = makeSink({ retryAfterMaxMs: 30_000 });
    await sink.deliver(makeEvent());
    expect(receiver.requests).toHaveLength(3);
    expect(clock.sleeps).toEqual([7000, 30_000]);
  });

  it('rejects after maxAttempts when the receiver keeps failing', async () => {
    receiver.script.push({ status: 502 }, { status: 502 }, { status: 502 }, { status: 200 });
    const sink = makeSink();
    const err = await sink.deliver(makeEvent()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DaemonError);
    expect((err as DaemonError).kind).toBe('sink');
    expect((err as DaemonError).code).toBe('WebhookHttp502');
    expect(receiver.requests).toHaveLength(3);
    expect(clock.sleeps).toHaveLength(2);
  });

  it('dead-letters a 400 (0600 file with at, event, status, reason) and resolves', async () => {
    receiver.script.push({ status: 400, body: '{"error":"unknown product"}' });
    const sink = makeSink();
    const event = makeEvent();
    await expect(sink.deliverReport(event)).resolves.toBe('dead_letter');
    expect(sink.deadLettered()).toBe(1);
    expect(receiver.requests).toHaveLength(1);
    const file = path.join(dir, 'state', 'dead-letter.jsonl');
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]!);
    expect(Object.keys(entry)).toEqual(['at', 'event', 'status', 'reason']);
    expect(entry.event).toEqual(event);
    expect(entry.status).toBe(400);
    expect(entry.reason).toBe('HTTP 400: {"error":"unknown product"}');
    expect(entry.at).toBe(new Date(clock.now()).toISOString());
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    // the next event goes through normally; deliver() resolves for a dead letter too
    receiver.script.push({ status: 404 });
    await expect(sink.deliver(makeEvent({ id: 'second' }))).resolves.toBeUndefined();
    expect(sink.deadLettered()).toBe(2);
    await sink.deliver(makeEvent({ id: 'third' }));
    expect(receiver.accepted).toEqual(['third']);
    expect((await readFile(file, 'utf8')).trim().split('\n')).toHaveLength(2);
    expect(log.entries().some((l) => l.level === 40 && l.status === 400)).toBe(true);
    expectNoSecretsLogged();
  });

  it('never writes a dead letter through a symlink: the delivery fails and the link target stays untouched', async () => {
    const target = path.join(dir, 'elsewhere.jsonl');
    await writeFile(target, 'untouched\n');
    await mkdir(path.join(dir, 'state'), { recursive: true });
    await symlink(target, path.join(dir, 'state', 'dead-letter.jsonl'));
    receiver.script.push({ status: 400 });
    const sink = makeSink();
    await expect(sink.deliverReport(makeEvent())).rejects.toMatchObject({ code: 'UnsafePath' });
    expect(await readFile(target, 'utf8')).toBe('untouched\n');
  });

  it('rejects after maxAttempts when the receiver is down (connection refused)', async () => {
    const port = await closedPort();
    const sink = makeSink({ url: `http://127.0.0.1:${port}/hook`, maxAttempts: 3 });
    const err = await sink.deliver(makeEvent()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DaemonError);
    expect((err as DaemonError).code).toBe('WebhookUnreachable');
    expect((err as Error).message).toMatch(/after 3 attempt/);
    expect(clock.sleeps).toHaveLength(2);
    expectNoSecretsLogged();
  });

  it('times out a receiver that never answers', async () => {
    receiver.script.push({ status: 200, hang: true });
    const sink = makeSink({ timeoutMs: 150, maxAttempts: 2 });
    const started = Date.now();
    await sink.deliver(makeEvent());
    expect(receiver.requests).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('aborts an in-flight delivery when the signal fires', async () => {
    receiver.script.push({ status: 200, hang: true });
    const sink = makeSink({ timeoutMs: 10_000 });
    const controller = new AbortController();
    const pending = sink.deliver(makeEvent(), controller.signal);
    while (receiver.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(AbortedError);
    expect(receiver.requests).toHaveLength(1);
  });

  it('lets a consumer de-duplicate redeliveries by X-IBW-Event-Id', async () => {
    const sink = makeSink();
    const a = makeEvent({ id: 'p:CREATE:1', type: 'batch.status_changed' });
    const b = makeEvent();
    for (const e of [a, b, a, b, a] as WatcherEvent[]) await sink.deliver(e);
    expect(receiver.requests).toHaveLength(5);
    expect(receiver.accepted).toEqual([a.id, b.id]);
  });
});

describe('createWebhookSink validation', () => {
  const base = (): Omit<WebhookSinkOptions, 'url'> => ({
    secret: SECRET,
    timeoutMs: 1000,
    deadLetterFile: path.join(dir, 'dl.jsonl'),
    clock,
    random: createSeededRandom(1),
    logger: log.logger,
  });

  it('requires https except for loopback hosts', async () => {
    expect(() => createWebhookSink({ ...base(), url: 'http://hooks.example.com/iot' })).toThrow(/must use https/);
    expect(() => createWebhookSink({ ...base(), url: 'http://10.0.0.1/iot' })).toThrow(/loopback/);
    expect(() => createWebhookSink({ ...base(), url: 'ftp://127.0.0.1/x' })).toThrow(/must use https/);
    expect(() => createWebhookSink({ ...base(), url: 'not a url' })).toThrow(/not a valid URL/);
    expect(() => createWebhookSink({ ...base(), url: 'https://u:p@hooks.example.com/' })).toThrow(/credentials/);
    for (const url of ['https://hooks.example.com/iot', 'http://127.0.0.1:9/x', 'http://localhost/x', 'http://[::1]:8080/']) {
      const sink = createWebhookSink({ ...base(), url });
      await sink.close();
    }
  });

  it('rejects an empty secret and bad numbers', () => {
    expect(() => createWebhookSink({ ...base(), url: receiver.url, secret: '' })).toThrow(/secret is empty/);
    expect(() => createWebhookSink({ ...base(), url: receiver.url, maxAttempts: 0 })).toThrow(
      'Expected `maxAttempts` to be a finite integer >= 1, got `0` (number)',
    );
    expect(() => createWebhookSink({ ...base(), url: receiver.url, timeoutMs: Number.NaN })).toThrow(/timeoutMs/);
  });

  it('classifies loopback hosts and parses Retry-After', () => {
    expect(['localhost', '127.0.0.1', '127.1.2.3', '[::1]', '::1'].every(isLoopbackHost)).toBe(true);
    expect(['example.com', '10.0.0.1', '128.0.0.1', '[::2]', 'localhost.evil.com'].some(isLoopbackHost)).toBe(false);
    const now = Date.parse('2026-11-28T10:00:00.000Z');
    expect(parseRetryAfter('5', now)).toBe(5000);
    expect(parseRetryAfter(['2', '9'], now)).toBe(2000);
    expect(parseRetryAfter('Sat, 28 Nov 2026 10:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('soon', now)).toBeNull();
    expect(parseRetryAfter(undefined, now)).toBeNull();
  });
});
