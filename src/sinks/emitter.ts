/**
 * The typed emitter sink for library users (`createWatcher(config).on('batch.settled', ...)`).
 *
 * Listeners run synchronously inside `deliver`, first the ones for the event's type, then the `'*'` ones, in
 * subscription order. A listener that throws (or returns a rejected promise) never reaches the caller or the
 * other listeners (safeEmit); the error goes to `onListenerError` when given. `deliver` always resolves.
 */
import type { EventSink } from '../core/ports.js';
import type { EventType, WatcherEvent, WatcherEventMap } from '../events.js';

/** Listener for every event type. */
export type AnyEventListener = (event: WatcherEvent) => void;

/** Options of {@link createEmitterSink}. */
export interface EmitterSinkOptions {
  /**
   * Called with whatever a listener threw. Must not throw itself (it is guarded too).
   * @default ignore
   */
  onListenerError?: (error: unknown, event: WatcherEvent) => void;
}

/** The emitter sink: an {@link EventSink} plus typed subscription. */
export interface EmitterSink extends EventSink {
  /** Subscribe to one event type, or `'*'` for all. Returns a function that unsubscribes. */
  on<K extends EventType>(type: K, listener: WatcherEventMap[K]): () => void;
  on(type: '*', listener: AnyEventListener): () => void;
  /** Remove a listener added with `on`. */
  off<K extends EventType>(type: K, listener: WatcherEventMap[K]): void;
  off(type: '*', listener: AnyEventListener): void;
  /** Number of listeners for a type (or `'*'`). */
  listenerCount(type: EventType | '*'): number;
  /** Remove every listener. */
  removeAllListeners(): void;
}

/** Creates the emitter sink (name `emitter`). */
export function createEmitterSink(options: EmitterSinkOptions = {}): EmitterSink {
  const listeners = new Map<string, AnyEventListener[]>();

  const add = (type: string, listener: AnyEventListener): (() => void) => {
    listeners.set(type, [...(listeners.get(type) ?? []), listener]);
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      remove(type, listener);
    };
  };
  const remove = (type: string, listener: AnyEventListener): void => {
    const list = listeners.get(type);
    if (list === undefined) return;
    const idx = list.indexOf(listener);
    if (idx < 0) return;
    const next = [...list.slice(0, idx), ...list.slice(idx + 1)];
    if (next.length === 0) listeners.delete(type);
    else listeners.set(type, next);
  };
  const reportError = (error: unknown, event: WatcherEvent): void => {
    try {
      options.onListenerError?.(error, event);
    } catch {
      // guarded: an error reporter cannot break delivery either
    }
  };
  const safeCall = (listener: AnyEventListener, event: WatcherEvent): void => {
    try {
      const ret: unknown = listener(event);
      if (ret instanceof Promise) ret.catch((err: unknown) => reportError(err, event));
    } catch (err) {
      reportError(err, event);
    }
  };

  return {
    name: 'emitter',
    on(type: string, listener: AnyEventListener): () => void {
      return add(type, listener);
    },
    off(type: string, listener: AnyEventListener): void {
      remove(type, listener);
    },
    listenerCount: (type) => listeners.get(type)?.length ?? 0,
    removeAllListeners: () => listeners.clear(),
    deliver(event: WatcherEvent): Promise<void> {
      // Snapshots: a listener that (un)subscribes during delivery affects the next event only.
      for (const listener of listeners.get(event.type) ?? []) safeCall(listener, event);
      for (const listener of listeners.get('*') ?? []) safeCall(listener, event);
      return Promise.resolve();
    },
    close(): Promise<void> {
      listeners.clear();
      return Promise.resolve();
    },
  };
}
