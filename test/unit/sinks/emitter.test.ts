import { describe, expect, expectTypeOf, it } from 'vitest';

import type { WatcherEvent } from '../../../src/events.js';
import { createEmitterSink } from '../../../src/sinks/emitter.js';

import { makeEvent } from './helpers.js';

describe('createEmitterSink', () => {
  it('calls typed listeners for their type and wildcard listeners for all, in order', async () => {
    const sink = createEmitterSink();
    expect(sink.name).toBe('emitter');
    const seen: string[] = [];
    sink.on('batch.settled', (e) => {
      expectTypeOf(e.type).toEqualTypeOf<'batch.settled'>();
      seen.push(`settled:${e.id}`);
    });
    sink.on('batch.added', (e) => seen.push(`added:${e.id}`));
    sink.on('*', (e: WatcherEvent) => seen.push(`*:${e.type}`));
    await sink.deliver(makeEvent({ id: 'x' }));
    await sink.deliver(makeEvent({ id: 'y', type: 'batch.added' }));
    expect(seen).toEqual(['settled:x', '*:batch.settled', 'added:y', '*:batch.added']);
  });

  it('unsubscribes with the returned function and with off()', async () => {
    const sink = createEmitterSink();
    const calls: string[] = [];
    const a = (): void => void calls.push('a');
    const b = (): void => void calls.push('b');
    const unsubscribeA = sink.on('batch.settled', a);
    sink.on('*', b);
    expect(sink.listenerCount('batch.settled')).toBe(1);
    unsubscribeA();
    unsubscribeA();
    sink.off('*', b);
    await sink.deliver(makeEvent());
    expect(calls).toEqual([]);
    expect(sink.listenerCount('batch.settled')).toBe(0);
    expect(sink.listenerCount('*')).toBe(0);
  });

  it('never lets a throwing or rejecting listener reach the caller or the other listeners', async () => {
    const errors: unknown[] = [];
    const sink = createEmitterSink({ onListenerError: (err) => errors.push(err) });
    const seen: string[] = [];
    sink.on('batch.settled', () => {
      throw new Error('listener bug');
    });
    sink.on('batch.settled', (() => Promise.reject(new Error('async bug'))) as unknown as () => void);
    sink.on('batch.settled', (e) => seen.push(e.id));
    await expect(sink.deliver(makeEvent())).resolves.toBeUndefined();
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(['1295006:CREATE_SUCCESS:7']);
    expect(errors.map((e) => (e as Error).message)).toEqual(['listener bug', 'async bug']);
  });

  it('survives an onListenerError that throws', async () => {
    const sink = createEmitterSink({
      onListenerError: () => {
        throw new Error('reporter bug');
      },
    });
    sink.on('*', () => {
      throw new Error('listener bug');
    });
    await expect(sink.deliver(makeEvent())).resolves.toBeUndefined();
  });

  it('a listener added during delivery sees only later events', async () => {
    const sink = createEmitterSink();
    const late: string[] = [];
    sink.on('batch.settled', () => {
      sink.on('batch.settled', (e) => late.push(e.id));
    });
    await sink.deliver(makeEvent({ id: 'first' }));
    await sink.deliver(makeEvent({ id: 'second' }));
    expect(late).toEqual(['second']);
  });

  it('close() removes every listener', async () => {
    const sink = createEmitterSink();
    let n = 0;
    sink.on('*', () => (n += 1));
    await sink.close();
    await sink.deliver(makeEvent());
    expect(n).toBe(0);
  });
});
