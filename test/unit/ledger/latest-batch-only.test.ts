/**
 * The read-only path (`status`) parses only the last batch record of each key per journal; the state it builds
 * must be exactly the state of the full parse, torn tails and forgets included.
 */
import { appendFile, mkdtemp, readFile, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { openFileLedger } from '../../../src/ledger/file-ledger.js';
import { parseJournal } from '../../../src/ledger/journal-format.js';
import { readLedgerDir, readLedgerReadOnly } from '../../../src/ledger/read-ledger.js';
import { makeBatch } from './helpers.js';

let dir = '';
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function ledgerWithHistory(): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'ibw-latest-'));
  const ledger = await openFileLedger({ dir, fsync: false });
  for (let poll = 1; poll <= 4; poll += 1) {
    await ledger.append([1, 2, 3].map((i) => ({ t: 'batch' as const, rec: makeBatch(i, { polls: poll, status: poll < 4 ? 'CHECK' : 'CREATE' }) })));
  }
  await ledger.append([{ t: 'forget', key: makeBatch(2).key }]);
  await ledger.append([{ t: 'batch', rec: makeBatch(3, { polls: 9, state: 'settled', outcome: 'created' }) }]);
  await ledger.close();
  return dir;
}

describe('parseJournal latestBatchOnly', () => {
  it('gives the same state as the full parse, with only the last record of each batch parsed', async () => {
    const d = await ledgerWithHistory();
    const buf = await readFile(join(d, 'journal.0.jsonl'));
    const lazy = parseJournal(buf, 'j', { latestBatchOnly: true });
    const full = parseJournal(buf, 'j');
    expect(lazy.entries.map((e) => e.seq)).toEqual(full.entries.map((e) => e.seq));
    expect(lazy.entries.filter((e) => e.record === null)).toHaveLength(10); // 12 + 1 batch lines, 3 keys
    const fromFull = await readLedgerDir(d);
    const fromLazy = await readLedgerReadOnly(d);
    expect([...fromLazy.batches.entries()]).toEqual([...fromFull.state.batches.entries()]);
    expect(fromLazy.batches.get(makeBatch(3).key)).toMatchObject({ polls: 9, state: 'settled' });
    expect(fromLazy.batches.has(makeBatch(2).key)).toBe(false);
  });

  it('a torn or damaged last record does not hide the one before it', async () => {
    const d = await ledgerWithHistory();
    const path = join(d, 'journal.0.jsonl');
    const text = await readFile(path, 'utf8');
    // Tear the last line (batch 3, polls 9) in the middle.
    await truncate(path, Buffer.byteLength(text) - 40);
    const torn = await readLedgerReadOnly(d);
    expect(torn.batches.get(makeBatch(3).key)).toMatchObject({ polls: 4, status: 'CREATE' });
    // A complete line with a wrong checksum at the end is torn too.
    await truncate(path, Buffer.byteLength(text));
    const good = text.trimEnd().split('\n');
    const last = good.at(-1)!.replace('"polls":9', '"polls":8');
    await truncate(path, Buffer.byteLength(good.slice(0, -1).join('\n')) + 1);
    await appendFile(path, `${last}\n`);
    const damaged = await readLedgerReadOnly(d);
    expect(damaged.batches.get(makeBatch(3).key)).toMatchObject({ polls: 4 });
  });
});
