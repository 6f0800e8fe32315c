/**
 * The snapshot and journal lines encoded through one reused buffer (src/ledger/byte-chunk.ts) are byte for byte what
 * the string encoders wrote before (issue #14), also when a record straddles the buffer's end or is larger than it.
 */
import type { FileHandle } from 'node:fs/promises';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { LedgerSnapshot } from '../../../src/core/ports.js';
import type { BatchRecord, OutboxEntry } from '../../../src/core/record.js';
import { ByteChunk } from '../../../src/ledger/byte-chunk.js';
import { openFileLedger } from '../../../src/ledger/file-ledger.js';
import {
  captureSnapshot,
  encodeJournalLine,
  encodeSnapshotBody,
  encodeSnapshotHeader,
  parseSnapshot,
  putJournalLine,
  writeSnapshotTo,
} from '../../../src/ledger/journal-format.js';
import { nodeLedgerFs } from '../../../src/ledger/ledger-fs.js';
import { readLedgerReadOnly } from '../../../src/ledger/read-ledger.js';
import { batchRec, makeBatch, makeEvent, plain, tempDir } from './helpers.js';

/** The snapshot body encoder as it was before the reused buffer (snapshotBodyChunks + join), kept as the reference. */
function legacySnapshotBody(state: LedgerSnapshot, chunkSize = 1000): string {
  const capture = captureSnapshot(state);
  const out: string[] = ['"batches":[\n'];
  for (let i = 0; i < capture.batches.length; i += chunkSize) {
    const part = capture.batches.slice(i, i + chunkSize).map((rec) => JSON.stringify(rec));
    out.push((i === 0 ? '' : ',\n') + part.join(',\n'));
  }
  out.push('\n],"outbox":[\n');
  for (let i = 0; i < capture.outbox.length; i += chunkSize) {
    const part = capture.outbox.slice(i, i + chunkSize).map((entry) => JSON.stringify(entry));
    out.push((i === 0 ? '' : ',\n') + part.join(',\n'));
  }
  out.push('\n]}\n');
  return out.join('');
}

/** Names that exercise UTF-8 widths and JSON escapes: 2-, 3- and 4-byte characters, a lone surrogate, controls. */
const AWKWARD = ['plain', 'ü-línea', '线路-3 传感器', 'emoji 🚀🛰️', 'lone \ud800 surrogate', 'quote " back \\ slash', 'ctl \u0001\t\n\u2028'];

function awkwardState(n: number): LedgerSnapshot {
  const state: LedgerSnapshot = { batches: new Map(), outbox: new Map() };
  for (let i = 0; i < n; i += 1) {
    const rec: BatchRecord = makeBatch(i, { name: AWKWARD[i % AWKWARD.length]!, labels: { k: AWKWARD[(i + 3) % AWKWARD.length]! } });
    state.batches.set(rec.key, rec);
    const entry: OutboxEntry = { event: makeEvent(`e${i}`, { name: AWKWARD[(i + 1) % AWKWARD.length]! }), acked: i % 2 === 0 ? ['log'] : [] };
    state.outbox.set(entry.event.id, entry);
  }
  return state;
}

/** Collects what a sink receives, copying it (the buffer is reused after the sink returns). */
function collector(): { sink: (b: Buffer) => Promise<void>; parts: Buffer[]; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  return {
    parts,
    sink: (b) => {
      parts.push(Buffer.from(b));
      return Promise.resolve();
    },
    bytes: () => Buffer.concat(parts),
  };
}

describe('snapshot through a reused buffer', () => {
  const state = awkwardState(60);
  const expected = Buffer.from(encodeSnapshotHeader(3, 77) + legacySnapshotBody(state), 'utf8');

  it.each([64, 97, 500, 4096, 1 << 20])('is byte-identical to the string encoder with a %i-byte buffer', async (size) => {
    const out = collector();
    const written = await writeSnapshotTo(new ByteChunk(size), 3, 77, captureSnapshot(state), out.sink);
    expect(out.bytes().equals(expected)).toBe(true);
    expect(written).toBe(expected.length);
    // Every write but an oversized record's is at most one buffer; a small buffer takes several.
    const recordBytes = Math.max(...[...state.batches.values()].map((r) => Buffer.byteLength(JSON.stringify(r)) + 2));
    for (const part of out.parts) expect(part.length).toBeLessThanOrEqual(Math.max(size, recordBytes));
    if (size < expected.length) expect(out.parts.length).toBeGreaterThan(1);
    else expect(out.parts.length).toBe(1);
  });

  it('matches encodeSnapshotBody, and an empty state too; the result parses back to the same state', async () => {
    expect(encodeSnapshotBody(state)).toBe(legacySnapshotBody(state));
    const empty: LedgerSnapshot = { batches: new Map(), outbox: new Map() };
    const out = collector();
    await writeSnapshotTo(new ByteChunk(16), 0, 0, captureSnapshot(empty), out.sink);
    expect(out.bytes().toString('utf8')).toBe(encodeSnapshotHeader(0, 0) + legacySnapshotBody(empty));
    expect(plain(parseSnapshot(expected.toString('utf8'), 'x').state)).toEqual(plain(state));
  });

  it('reuses a buffer left dirty by a failed write', async () => {
    const chunk = new ByteChunk(128);
    const failing = (): Promise<void> => Promise.reject(new Error('EIO'));
    await expect(writeSnapshotTo(chunk, 3, 77, captureSnapshot(state), failing)).rejects.toThrow('EIO');
    const out = collector();
    await writeSnapshotTo(chunk, 3, 77, captureSnapshot(state), out.sink);
    expect(out.bytes().equals(expected)).toBe(true);
  });
});

describe('journal lines through a reused buffer', () => {
  it('putJournalLine writes the bytes of encodeJournalLine, or nothing when the line does not fit', () => {
    const chunk = new ByteChunk(16_384);
    const lines: string[] = [];
    for (let i = 0; i < 7; i += 1) {
      const json = JSON.stringify(batchRec(makeBatch(i, { name: AWKWARD[i]! })));
      expect(putJournalLine(chunk, 1000 + i, json)).toBe(true);
      lines.push(encodeJournalLine(1000 + i, json));
    }
    expect(chunk.view().toString('utf8')).toBe(lines.join(''));
    const used = chunk.used;
    const tiny = new ByteChunk(40);
    expect(putJournalLine(tiny, 1, JSON.stringify(batchRec(makeBatch(1))))).toBe(false);
    expect(tiny.used).toBe(0);
    expect(chunk.used).toBe(used);
  });

  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterEach(async () => {
    await cleanup();
  });

  it('a group larger than the buffer: several writes, one fsync, the file byte-identical, and it reopens', async () => {
    const calls = { write: 0, sync: 0 };
    const fs = {
      write: (h: FileHandle, d: Uint8Array) => {
        calls.write += 1;
        return nodeLedgerFs.write(h, d);
      },
      sync: (h: FileHandle) => {
        calls.sync += 1;
        return nodeLedgerFs.sync(h);
      },
    };
    const ledger = await openFileLedger({ dir, groupCommitMs: 0, fs });
    // About 1.2 MB of records (several 256 KiB buffers), one with a name larger than the whole buffer.
    const recs = Array.from({ length: 1500 }, (_, i) =>
      batchRec(makeBatch(i, { name: i === 700 ? '线'.repeat(100_000) : `${AWKWARD[i % AWKWARD.length]!} ${'x'.repeat(600)}` })),
    );
    await ledger.append(recs);
    const expected = recs.map((r, i) => encodeJournalLine(i + 1, JSON.stringify(r))).join('');
    expect(await readFile(join(dir, 'journal.0.jsonl'), 'utf8')).toBe(expected);
    expect(calls.write).toBeGreaterThan(4);
    expect(calls.sync).toBe(1);
    expect(ledger.stats()).toMatchObject({ seq: 1500, journalBytes: Buffer.byteLength(expected), journalRecords: 1500 });
    await ledger.close();
    const read = await readLedgerReadOnly(dir);
    expect([...read.batches.values()]).toEqual(recs.map((r) => (r.t === 'batch' ? r.rec : null)));
  });
});
