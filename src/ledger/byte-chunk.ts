/**
 * A fixed, reused byte buffer that text is encoded into (UTF-8) piece by piece and handed to a writer whenever it
 * fills, so the ledger writes snapshots and journal groups without building them as one big string first.
 *
 * Why (issue #14): at 100,000 batches the snapshot is tens of MB of JSON; as joined strings (and the flat copy
 * `Buffer.from` makes of them) those go straight to V8's large-object space and count against the old generation,
 * so every compaction pushed the heap towards a major GC. Small per-record strings die young instead.
 */

/** Writes bytes out; the bytes must be used (written) before the promise settles: the buffer is reused after. */
export type ChunkSink = (bytes: Buffer) => Promise<void>;

/** See the module comment. Not for concurrent use: one encoding at a time per instance. */
export class ByteChunk {
  readonly #buf: Buffer;
  #used = 0;

  /** @param size bytes of the buffer (allocated once, reused for every chunk) */
  constructor(size: number) {
    this.#buf = Buffer.allocUnsafe(size);
  }

  /** Bytes currently held. */
  get used(): number {
    return this.#used;
  }

  /** Bytes still free. */
  get free(): number {
    return this.#buf.length - this.#used;
  }

  /** Size of the buffer. */
  get size(): number {
    return this.#buf.length;
  }

  /**
   * Whether `text` and `extraBytes` more fit in the free space (a cheap upper bound first: 3 bytes per UTF-16 unit
   * is the most UTF-8 needs, a surrogate pair being 4 bytes for 2 units).
   */
  fits(text: string, extraBytes = 0): boolean {
    const free = this.free - extraBytes;
    return text.length * 3 <= free || Buffer.byteLength(text, 'utf8') <= free;
  }

  /** Appends the UTF-8 bytes of `text`; the caller checked {@link fits}. */
  put(text: string): void {
    this.#used += this.#buf.write(text, this.#used, 'utf8');
  }

  /** The bytes from `start` to the end of what is held (a view, valid until the next {@link reset}). */
  view(start = 0): Buffer {
    return this.#buf.subarray(start, this.#used);
  }

  /** Forgets what is held. */
  reset(): void {
    this.#used = 0;
  }

  /** Hands what is held to `sink` (when anything is) and empties the buffer. Returns the bytes written. */
  async drainTo(sink: ChunkSink): Promise<number> {
    const n = this.#used;
    if (n === 0) return 0;
    await sink(this.#buf.subarray(0, n));
    this.#used = 0;
    return n;
  }

  /**
   * Appends `text`, writing out what is held first when it does not fit, or writing `text` on its own (one
   * allocation) when it is larger than the whole buffer. Returns the bytes written out by this call.
   */
  async append(text: string, sink: ChunkSink): Promise<number> {
    if (this.fits(text)) {
      this.put(text);
      return 0;
    }
    let written = await this.drainTo(sink);
    if (this.fits(text)) {
      this.put(text);
      return written;
    }
    const data = Buffer.from(text, 'utf8');
    await sink(data);
    written += data.length;
    return written;
  }
}
