/**
 * HMAC-SHA256 with the key's two pad blocks hashed once, for the V3 signature of every request (issue #14).
 *
 * Why not `crypto.createHmac`: Node builds an `Hmac` object (an OpenSSL context, the key schedule of both pads)
 * per call, about 4 µs for the 81 bytes of a V3 string-to-sign, where the hashing itself is three SHA-256 blocks.
 * Here the states after the inner and outer pad blocks are computed once per key (RFC 2104 allows exactly this
 * precomputation), and each message costs those three compressions in JavaScript, with no allocation but the hex
 * string. Messages that are not pure ASCII go to `createHmac` (the V3 string-to-sign is always ASCII).
 *
 * Checked against `createHmac` for keys and messages of every length class in test/unit/alibaba/hmac-sha256.test.ts.
 */
import { createHash, createHmac } from 'node:crypto';

/** An HMAC-SHA256 keyed once: `sign(message)` is the lower-case hex MAC of `message` (UTF-8). */
export interface HmacSha256 {
  sign(message: string): string;
}

const K = Int32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const IV = Int32Array.from([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

/** The message schedule, shared: signing is synchronous, so one buffer serves every call. */
const W = new Int32Array(64);
/** The running hash state, shared like W. */
const H = new Int32Array(8);

/** One SHA-256 compression of the block in W[0..15] into H. */
function compress(): void {
  for (let t = 16; t < 64; t += 1) {
    const w15 = W[t - 15]!;
    const w2 = W[t - 2]!;
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[t] = (s1 + W[t - 7]! + s0 + W[t - 16]!) | 0;
  }
  let a = H[0]!;
  let b = H[1]!;
  let c = H[2]!;
  let d = H[3]!;
  let e = H[4]!;
  let f = H[5]!;
  let g = H[6]!;
  let h = H[7]!;
  for (let t = 0; t < 64; t += 1) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[t]! + W[t]!) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  H[0] = (H[0]! + a) | 0;
  H[1] = (H[1]! + b) | 0;
  H[2] = (H[2]! + c) | 0;
  H[3] = (H[3]! + d) | 0;
  H[4] = (H[4]! + e) | 0;
  H[5] = (H[5]! + f) | 0;
  H[6] = (H[6]! + g) | 0;
  H[7] = (H[7]! + h) | 0;
}

/** The state after hashing one 64-byte pad block (key XOR `pad`) from the IV. */
function padState(key: Buffer, pad: number): Int32Array {
  H.set(IV);
  for (let w = 0; w < 16; w += 1) {
    const j = w * 4;
    W[w] = (((key[j] ?? 0) ^ pad) << 24) | (((key[j + 1] ?? 0) ^ pad) << 16) | (((key[j + 2] ?? 0) ^ pad) << 8) | ((key[j + 3] ?? 0) ^ pad);
  }
  compress();
  return Int32Array.from(H);
}

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function hexOfH(): string {
  let out = '';
  for (let i = 0; i < 8; i += 1) {
    const v = H[i]!;
    out += HEX[(v >>> 24) & 0xff]! + HEX[(v >>> 16) & 0xff]! + HEX[(v >>> 8) & 0xff]! + HEX[v & 0xff]!;
  }
  return out;
}

/**
 * Hashes the ASCII `msg` into H, which holds the state after `prefixBytes` bytes (a multiple of 64), and pads.
 * Returns false (H undefined) when `msg` has a character above 0x7f.
 */
function hashAsciiTail(msg: string, prefixBytes: number): boolean {
  const n = msg.length;
  let high = 0;
  let i = 0;
  for (; n - i >= 64; i += 64) {
    for (let w = 0; w < 16; w += 1) {
      const j = i + w * 4;
      const c0 = msg.charCodeAt(j);
      const c1 = msg.charCodeAt(j + 1);
      const c2 = msg.charCodeAt(j + 2);
      const c3 = msg.charCodeAt(j + 3);
      high |= c0 | c1 | c2 | c3;
      W[w] = (c0 << 24) | (c1 << 16) | (c2 << 8) | c3;
    }
    compress();
  }
  W.fill(0, 0, 16);
  const rem = n - i;
  for (let k = 0; k < rem; k += 1) {
    const c = msg.charCodeAt(i + k);
    high |= c;
    W[k >> 2]! |= c << (24 - 8 * (k & 3));
  }
  if (high > 0x7f) return false;
  W[rem >> 2]! |= 0x80 << (24 - 8 * (rem & 3));
  if (rem >= 56) {
    compress();
    W.fill(0, 0, 16);
  }
  const bits = (prefixBytes + n) * 8;
  W[14] = Math.floor(bits / 0x100000000);
  W[15] = bits | 0;
  compress();
  return true;
}

/** Keys `key` (UTF-8; a key longer than the 64-byte block is hashed first, as RFC 2104 says). */
export function createHmacSha256(key: string): HmacSha256 {
  let keyBytes = Buffer.from(key, 'utf8');
  if (keyBytes.length > 64) keyBytes = createHash('sha256').update(keyBytes).digest();
  const inner = padState(keyBytes, 0x36);
  const outer = padState(keyBytes, 0x5c);
  return {
    sign(message: string): string {
      H.set(inner);
      if (!hashAsciiTail(message, 64)) return createHmac('sha256', key).update(message, 'utf8').digest('hex');
      // The outer hash: opad block (precomputed), then the 32-byte inner digest, padded to one block.
      for (let i = 0; i < 8; i += 1) W[i] = H[i]!;
      W[8] = 0x80000000;
      W.fill(0, 9, 15);
      W[15] = (64 + 32) * 8;
      H.set(outer);
      compress();
      return hexOfH();
    },
  };
}

/** Keyed HMACs by key: a process signs with one AccessKey secret per account (a few, rotating) for its lifetime. */
const byKey = new Map<string, HmacSha256>();
/** Bound of {@link byKey}; past it the map starts over (rotated-out secrets do not pile up). */
const MAX_KEYS = 16;

/** `createHmacSha256(key).sign(message)`, reusing the pad states of a key seen before. */
export function hmacSha256Hex(key: string, message: string): string {
  let hmac = byKey.get(key);
  if (hmac === undefined) {
    if (byKey.size >= MAX_KEYS) byKey.clear();
    hmac = createHmacSha256(key);
    byKey.set(key, hmac);
  }
  return hmac.sign(message);
}
