/**
 * The precomputed-pad HMAC-SHA256 (src/alibaba/hmac-sha256.ts) against Node's `createHmac`: every block-boundary
 * length of key and message, the key-longer-than-a-block rule, non-ASCII messages (the fallback) and keys, and the
 * keyed cache (many keys, alternating keys) never answering with another key's pads.
 */
import { createHmac } from 'node:crypto';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { createHmacSha256, hmacSha256Hex } from '../../../src/alibaba/hmac-sha256.js';

const node = (key: string, message: string): string => createHmac('sha256', key).update(message, 'utf8').digest('hex');

describe('createHmacSha256 equals createHmac', () => {
  it('RFC 4231 test case 2 ("Jefe")', () => {
    expect(createHmacSha256('Jefe').sign('what do ya want for nothing?')).toBe(
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
  });

  it('for key lengths 0..130 and message lengths 0..200 (every padding case)', () => {
    const keys = Array.from({ length: 131 }, (_, n) => 'k'.repeat(n).replace(/k/g, (_c, i: number) => String.fromCharCode(33 + (i % 90))));
    const messages = Array.from({ length: 201 }, (_, n) => 'ACS3-HMAC-SHA256\n'.repeat(13).slice(0, n));
    for (const key of keys) {
      const hmac = createHmacSha256(key);
      for (const m of [messages[0]!, messages[55]!, messages[56]!, messages[63]!, messages[64]!, messages[81]!, messages[119]!, messages[120]!]) {
        expect(hmac.sign(m)).toBe(node(key, m));
      }
    }
    const hmac = createHmacSha256('SimAccessKeySecret');
    for (const m of messages) expect(hmac.sign(m)).toBe(node('SimAccessKeySecret', m));
  });

  it('for random unicode keys and messages (non-ASCII messages take the createHmac path)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 80 }), fc.string({ unit: 'grapheme', maxLength: 150 }), (key, message) => {
        expect(createHmacSha256(key).sign(message)).toBe(node(key, message));
      }),
      { numRuns: 500 },
    );
  });

  it('the same keyed instance gives the same answer twice and a different one for a different message', () => {
    const hmac = createHmacSha256('testsecret');
    const a = hmac.sign('ACS3-HMAC-SHA256\naaaa');
    expect(hmac.sign('ACS3-HMAC-SHA256\naaaa')).toBe(a);
    expect(hmac.sign('ACS3-HMAC-SHA256\naaab')).not.toBe(a);
    expect(hmac.sign('ACS3-HMAC-SHA256\naaab')).toBe(node('testsecret', 'ACS3-HMAC-SHA256\naaab'));
  });
});

describe('hmacSha256Hex (keyed cache)', () => {
  it('alternating keys each get their own MAC', () => {
    for (let i = 0; i < 10; i += 1) {
      for (const key of ['secret-a', 'secret-b', 'secret-a ']) {
        const m = `ACS3-HMAC-SHA256\n${i}`;
        expect(hmacSha256Hex(key, m)).toBe(node(key, m));
      }
    }
  });

  it('more keys than the cache holds (it starts over) stay correct, old ones included', () => {
    const keys = Array.from({ length: 40 }, (_, i) => `rotating-secret-${i}`);
    for (const round of [0, 1]) {
      for (const key of keys) expect(hmacSha256Hex(key, `msg ${round}`)).toBe(node(key, `msg ${round}`));
    }
  });
});
