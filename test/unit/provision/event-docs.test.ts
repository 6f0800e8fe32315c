/** The event types of src/events.ts are the ones the documentation lists: README, operations.md, provisioning.md. */

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

import { ALL_EVENT_TYPES, EVENT_TYPES, PROVISION_EVENT_TYPES } from '../../../src/events.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const read = (file: string): string => readFileSync(resolve(ROOT, file), 'utf8');
/** Every `batch.x` / `provision.x` code span of a document. */
const documented = (text: string): Set<string> => new Set([...text.matchAll(/`((?:batch|provision)\.[a-z_]+)`/g)].map((m) => m[1]!));

describe('event types in the documentation', () => {
  it('README and operations.md name every event type, and no other', () => {
    for (const file of ['README.md', 'docs/operations.md']) {
      const names = documented(read(file));
      expect([...ALL_EVENT_TYPES].filter((t) => !names.has(t)), file).toEqual([]);
      expect([...names].filter((n) => !(ALL_EVENT_TYPES as readonly string[]).includes(n)), file).toEqual([]);
    }
  });

  it('provisioning.md names every provisioning event', () => {
    const names = documented(read('docs/provisioning.md'));
    expect(PROVISION_EVENT_TYPES.filter((t) => !names.has(t))).toEqual([]);
    expect(ALL_EVENT_TYPES).toEqual([...EVENT_TYPES, ...PROVISION_EVENT_TYPES]);
  });
});
