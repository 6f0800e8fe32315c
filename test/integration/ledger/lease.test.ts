/**
 * The ledger lease across processes that cannot see each other's pids (two containers on one volume, both
 * pid 1). Each writer is a separate process (fixtures/lease-child.ts). "Another container" is stood in for by
 * the lock identity (pid 1 and a pid namespace of its own), and, where `unshare` works (root), by real pid
 * namespaces. A short lease (600 ms) keeps the test quick; the rule is the same at the default 15 s.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { readLedgerReadOnly } from '../../../src/ledger/read-ledger.js';
import { tempDir } from '../../unit/ledger/helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/lease-child.ts', import.meta.url));
const TSX = createRequire(import.meta.url).resolve('tsx');
const LEASE_MS = 600;

interface Fact {
  ev: string;
  ok?: boolean;
  n?: number;
  code?: string;
  message?: string;
  /** When the child printed it, and (appends) when it called append(). */
  t: number;
  submittedAt?: number;
  /** When the parent read it. */
  at: number;
}

interface Writer {
  proc: ChildProcess;
  facts: Fact[];
  stderr: string[];
  exited: Promise<number | null>;
  waitFor(pred: (f: Fact) => boolean, what: string, timeoutMs?: number): Promise<Fact>;
}

function startWriter(args: Record<string, unknown>, wrap: string[] = []): Writer {
  const argv = [process.execPath, '--import', TSX, CHILD, JSON.stringify(args)];
  const [cmd, ...rest] = [...wrap, ...argv];
  const proc = spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
  const facts: Fact[] = [];
  const stderr: string[] = [];
  const waiters: { pred: (f: Fact) => boolean; resolve: (f: Fact) => void }[] = [];
  proc.stderr.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  createInterface({ input: proc.stdout }).on('line', (line) => {
    const fact = { ...(JSON.parse(line) as Omit<Fact, 'at'>), at: Date.now() };
    facts.push(fact);
    for (const w of [...waiters]) {
      if (w.pred(fact)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(fact);
      }
    }
  });
  const exited = once(proc, 'exit').then(([code]) => code as number | null);
  return {
    proc,
    facts,
    stderr,
    exited,
    waitFor(pred, what, timeoutMs = 20_000) {
      const hit = facts.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; facts: ${JSON.stringify(facts.slice(-5))}; stderr: ${stderr.join('')}`)), timeoutMs);
        waiters.push({
          pred,
          resolve: (f) => {
            clearTimeout(timer);
            resolve(f);
          },
        });
      });
    },
  };
}

/** Lock identity of a stand-in container: pid 1 in a pid namespace of its own. */
const container = (name: string): Record<string, unknown> => ({ pid: 1, pidNs: `pid:[${name}]`, host: name });
const acked = (w: Writer): number[] => w.facts.filter((f) => f.ev === 'append' && f.ok).map((f) => f.n!);

let dir: string;
let cleanup: () => Promise<void>;
let writers: Writer[];
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('ibw-lease-'));
  writers = [];
});
afterEach(async () => {
  for (const w of writers) {
    if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
    await w.exited;
  }
  await cleanup();
});

function writer(args: Record<string, unknown>, wrap: string[] = []): Writer {
  const w = startWriter({ dir, leaseMs: LEASE_MS, appendEveryMs: 20, ...args }, wrap);
  writers.push(w);
  return w;
}

describe('ledger lease between processes with the same pid (two containers)', () => {
  it('the second refuses while the first lives and renews, and takes over once the first died and its lease lapsed', async () => {
    const a = writer({ identity: container('a') });
    await a.waitFor((f) => f.ev === 'opened', 'a opened');
    await a.waitFor((f) => f.ev === 'append' && f.ok === true && f.n! >= 3, 'a writing');

    const b = writer({ identity: container('b') });
    const refused = await b.waitFor((f) => f.ev === 'refused', 'b refused');
    expect(await b.exited).toBe(3);
    expect(refused.code).toBe('LedgerLocked');
    expect(refused.message).toContain('process 1 on a');
    expect(refused.message).toContain('renews its lease');
    expect(b.facts.some((f) => f.ev === 'opened')).toBe(false);
    // a was not disturbed.
    const before = acked(a).length;
    await a.waitFor((f) => f.ev === 'append' && f.ok === true && f.n! > before + 2, 'a still writing');

    a.proc.kill('SIGKILL');
    await a.exited;
    const lastRenewal = (await stat(join(dir, 'LOCK'))).mtimeMs;
    // pid 1 is alive in this pid namespace, and that proves nothing about a: only the lapse counts.
    const c = writer({ identity: container('c') });
    const opened = await c.waitFor((f) => f.ev === 'opened', 'c took over');
    expect(opened.t).toBeGreaterThanOrEqual(lastRenewal + LEASE_MS);
    await c.waitFor((f) => f.ev === 'append' && f.ok === true && f.n! >= 3, 'c writing');
    expect(JSON.parse((await readFile(join(dir, 'LOCK'), 'utf8')).split('\n')[1]!)).toMatchObject({ host: 'c', pid: 1 });
    c.proc.kill('SIGTERM');
    await c.waitFor((f) => f.ev === 'close', 'c closed');
    expect(c.facts.find((f) => f.ev === 'close')).toMatchObject({ ok: true });

    // Every acknowledged record of both writers is there.
    const state = await readLedgerReadOnly(dir);
    const keys = new Set(state.batches.keys());
    const pidOf = (w: Writer): number => w.proc.pid!;
    for (const w of [a, c]) for (const n of acked(w)) expect(keys.has(`a1TestProduct/${pidOf(w)}-${n}`)).toBe(true);
  });

  it('a holder whose lease was taken over stops writing at once', async () => {
    const a = writer({ identity: container('a') });
    await a.waitFor((f) => f.ev === 'append' && f.ok === true && f.n! >= 3, 'a writing');
    // Freeze a (a paused container, a stalled node): it stops renewing.
    a.proc.kill('SIGSTOP');
    const c = writer({ identity: container('c') });
    await c.waitFor((f) => f.ev === 'opened', 'c took over the lapsed lease');
    await c.waitFor((f) => f.ev === 'append' && f.ok === true && f.n! >= 2, 'c writing');
    const wokeAt = Date.now();
    a.proc.kill('SIGCONT');
    const lost = await a.waitFor((f) => f.ev === 'lost', 'a noticed');
    expect(lost.message).toContain('taken over by process 1 on c');
    await a.waitFor((f) => f.ev === 'append' && f.ok === false, 'a append refused');
    await c.waitFor((f) => f.ev === 'append' && f.ok === true && f.n! >= 10, 'c still writing');
    // No write of a after it woke up: only what was already being written when it froze may complete (it went to
    // a's journal; c writes a journal of its own); no append made after the wake-up, and none after it noticed.
    const lostAt = a.facts.findIndex((f) => f.ev === 'lost');
    const oks = a.facts.filter((f) => f.ev === 'append' && f.ok);
    const ackedBeforeStop = oks.filter((f) => f.t < wokeAt).map((f) => f.n!);
    const lateAcks = oks.filter((f) => f.t >= wokeAt);
    expect(ackedBeforeStop.length).toBeGreaterThanOrEqual(3);
    expect(lateAcks.filter((f) => f.submittedAt! >= wokeAt)).toEqual([]);
    expect(a.facts.slice(lostAt).filter((f) => f.ev === 'append' && f.ok)).toEqual([]);
    expect(a.facts.filter((f) => f.ev === 'append' && f.ok === false).every((f) => f.code === 'LedgerLeaseLost')).toBe(true);
    // a's close reports that its state could not be flushed; it leaves c's lock alone.
    a.proc.kill('SIGTERM');
    const closed = await a.waitFor((f) => f.ev === 'close', 'a closed');
    expect(closed).toMatchObject({ ok: false, code: 'LedgerCloseFailed' });
    expect(JSON.parse((await readFile(join(dir, 'LOCK'), 'utf8')).split('\n')[1]!)).toMatchObject({ host: 'c' });
    c.proc.kill('SIGTERM');
    await c.waitFor((f) => f.ev === 'close', 'c closed');
    const state = await readLedgerReadOnly(dir);
    const aKeys = [...state.batches.keys()].filter((k) => k.startsWith(`a1TestProduct/${a.proc.pid}-`));
    for (const n of ackedBeforeStop) expect(aKeys).toContain(`a1TestProduct/${a.proc.pid}-${n}`);
    expect(aKeys.length).toBeLessThanOrEqual(ackedBeforeStop.length + lateAcks.length);
    expect(a.facts.filter((f) => f.ev === 'append' && f.submittedAt! >= wokeAt).length).toBeGreaterThan(0);
  });
});

const unshareWorks = spawnSync('unshare', ['-p', '-f', '--mount-proc', 'true']).status === 0;
const bindWorks = spawnSync('unshare', ['-m', 'sh', '-c', 'mount -o bind,ro /tmp /tmp']).status === 0;

describe.runIf(unshareWorks)('in real pid namespaces (unshare -p: both writers are pid 1)', () => {
  it('the second refuses while the first lives, and takes over after it is killed and the lease lapsed', async () => {
    const wrap = ['unshare', '-p', '-f', '--mount-proc', '--kill-child'];
    const a = writer({}, wrap);
    await a.waitFor((f) => f.ev === 'append' && f.ok === true && f.n! >= 3, 'a writing');
    expect((await readFile(join(dir, 'LOCK'), 'utf8')).split('\n')[0]).toBe('1');
    const b = writer({}, wrap);
    const refused = await b.waitFor((f) => f.ev === 'refused', 'b refused');
    expect(refused.message).toContain('renews its lease');
    a.proc.kill('SIGKILL'); // unshare --kill-child takes the pid-1 writer down with it
    await a.exited;
    const lastRenewal = (await stat(join(dir, 'LOCK'))).mtimeMs;
    const c = writer({}, wrap);
    const opened = await c.waitFor((f) => f.ev === 'opened', 'c took over');
    expect(opened.t).toBeGreaterThanOrEqual(lastRenewal + LEASE_MS);
    await c.waitFor((f) => f.ev === 'append' && f.ok === true, 'c writing');
  });
});

describe.runIf(bindWorks)('a state directory that turned read-only before shutdown (a private read-only bind mount)', () => {
  it('compact and close reject with the errno; nothing claims a clean stop', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    const w = startWriter({ dir, leaseMs: LEASE_MS, mode: 'readonly' }, ['unshare', '-m']);
    writers.push(w);
    expect(await w.exited).toBe(0);
    expect(w.facts.find((f) => f.ev === 'append')).toMatchObject({ ok: true });
    expect(w.facts.find((f) => f.ev === 'compact')).toMatchObject({ ok: false, code: 'EROFS' });
    const closed = w.facts.find((f) => f.ev === 'close');
    expect(closed).toMatchObject({ ok: false, code: 'LedgerCloseFailed' });
    expect(closed?.message).toContain('EROFS');
    expect(closed?.message).toContain(join(dir, 'LOCK'));
  });
});
