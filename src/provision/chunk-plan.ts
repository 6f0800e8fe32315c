/**
 * The chunk plan of a provisioning job (DESIGN.md §13). Pure.
 *
 * Identity rule: a chunk is its index in the job, and its membership is durable once planned. New chunks are
 * formed only from names that no planned chunk holds yet, in file order, `chunkSize` at a time. So:
 * - appending names to the file plans (and submits) only the new names;
 * - removing names from the file changes nothing already planned (a removed name that comes back is still
 *   held by its old chunk and is not submitted again);
 * - a planned chunk is never topped up, even when it is short: it may already be submitted.
 * A `count` job plans chunks for the devices not planned yet (`count` minus what the chunks hold); lowering
 * `count` changes nothing already planned.
 */

/** One name of a names chunk. */
export interface ChunkName {
  deviceName: string;
  nickname: string | null;
}

/** A planned chunk: a slice of names (BatchCheckDeviceNames) or a number of random names (BatchRegisterDevice). */
export type PlannedChunk =
  | { index: number; kind: 'names'; names: readonly ChunkName[] }
  | { index: number; kind: 'count'; count: number };

/** The result of extending a plan: the whole plan and the chunks that are new in it. */
export interface PlanExtension {
  chunks: PlannedChunk[];
  added: PlannedChunk[];
}

function nextIndex(existing: readonly PlannedChunk[]): number {
  let next = 0;
  for (const c of existing) if (c.index >= next) next = c.index + 1;
  return next;
}

function assertChunkSize(chunkSize: number): void {
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new RangeError(`chunkSize must be a positive integer, got ${chunkSize}`);
}

/**
 * Extends a names plan with the names of `devices` (in file order) that no chunk of `existing` holds.
 *
 * @throws RangeError when chunkSize is not a positive integer, or `existing` holds count chunks.
 */
export function planNameChunks(existing: readonly PlannedChunk[], devices: readonly ChunkName[], chunkSize: number): PlanExtension {
  assertChunkSize(chunkSize);
  const assigned = new Set<string>();
  for (const c of existing) {
    if (c.kind !== 'names') throw new RangeError(`chunk ${c.index} is a count chunk: a job is either names or count`);
    for (const n of c.names) assigned.add(n.deviceName);
  }
  const fresh: ChunkName[] = [];
  for (const d of devices) {
    if (assigned.has(d.deviceName)) continue;
    // NOTE: a duplicate within `devices` is planned once; the validator reports it, the plan must not depend on that.
    assigned.add(d.deviceName);
    fresh.push({ deviceName: d.deviceName, nickname: d.nickname });
  }
  const added: PlannedChunk[] = [];
  let index = nextIndex(existing);
  for (let start = 0; start < fresh.length; start += chunkSize) {
    added.push({ index, kind: 'names', names: fresh.slice(start, start + chunkSize) });
    index += 1;
  }
  return { chunks: [...existing, ...added], added };
}

/**
 * Extends a count plan so that its chunks hold `count` devices in all (never fewer than already planned).
 *
 * @throws RangeError when chunkSize is not a positive integer, or `existing` holds names chunks.
 */
export function planCountChunks(existing: readonly PlannedChunk[], count: number, chunkSize: number): PlanExtension {
  assertChunkSize(chunkSize);
  let planned = 0;
  for (const c of existing) {
    if (c.kind !== 'count') throw new RangeError(`chunk ${c.index} is a names chunk: a job is either names or count`);
    planned += c.count;
  }
  const added: PlannedChunk[] = [];
  let index = nextIndex(existing);
  for (let left = count - planned; left > 0; left -= chunkSize) {
    added.push({ index, kind: 'count', count: Math.min(chunkSize, left) });
    index += 1;
  }
  return { chunks: [...existing, ...added], added };
}

/** How many devices a chunk asks for. */
export function chunkDeviceCount(chunk: PlannedChunk): number {
  return chunk.kind === 'names' ? chunk.names.length : chunk.count;
}
