#!/usr/bin/env node
/**
 * The `iot-batch-watcher` executable. All logic is in main.ts; this only binds it to the real process.
 */
// NOTE: first, so the heap tuning is in place before the configuration and the ledger are loaded.
import './heap-tuning.js';
import { main, processIo } from './main.js';

const code = await main(processIo());
process.exitCode = code;
// NOTE: keep-alive sockets or a stuck sink must not keep a finished command alive.
setTimeout(() => process.exit(code), 2000).unref();
