import { PassThrough } from 'node:stream';

import type { Io } from '../../src/main.js';

/** A writable that keeps what was written, optionally pretending to be a terminal. */
export class CaptureStream extends PassThrough {
  text = '';
  isTTY: boolean;
  columns = 100;
  rows = 40;
  constructor(tty = false) {
    super();
    this.isTTY = tty;
    this.on('data', (d: Buffer) => {
      this.text += d.toString();
    });
  }
}

/** An in-process Io for main(io): captured stdout/stderr, signals by hand. */
export function memoryIo(argv: string[], env: Record<string, string | undefined> = {}, cwd = process.cwd()) {
  const stdout = new CaptureStream();
  const stderr = new CaptureStream();
  const handlers = new Map<NodeJS.Signals, Set<() => void>>();
  const exits: number[] = [];
  const io: Io = {
    argv,
    env,
    cwd,
    stdout,
    stderr,
    onSignal(signal, handler) {
      const set = handlers.get(signal) ?? new Set();
      set.add(handler);
      handlers.set(signal, set);
      return () => set.delete(handler);
    },
    exit(code) {
      exits.push(code);
    },
  };
  return {
    io,
    stdout,
    stderr,
    exits,
    signal(sig: NodeJS.Signals) {
      for (const h of [...(handlers.get(sig) ?? [])]) h();
    },
  };
}
