/**
 * Job state files: `<state.dir>/provision/<name>.json`, 0600 (they hold DeviceSecrets), atomic and fsync'd
 * (src/safe-fs.ts), so a save that resolved survives a crash.
 */

import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { DaemonError } from '../errors.js';
import { assertSafePathSegment, ensureDirectory, openSafeDir, writeFileAtomic } from '../safe-fs.js';
import type { ListableJobStore } from './daemon-provisioner.js';
import { JOB_STATE_VERSION, type JobState } from './job-state.js';

/** Creates the store below `stateDir`. */
export function createFileJobStore(stateDir: string): ListableJobStore {
  const root = path.resolve(stateDir);
  const file = (name: string) => path.join(root, 'provision', `${name}.json`);
  return {
    async list() {
      try {
        return (await readdir(path.join(root, 'provision'))).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw new DaemonError(`cannot list ${path.join(root, 'provision')}`, { kind: 'store', scope: 'process', cause: err });
      }
    },
    async load(name) {
      assertSafePathSegment(name, 'provisioning job name');
      let text: string;
      try {
        text = await readFile(file(name), 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw new DaemonError(`cannot read ${file(name)}`, { kind: 'store', scope: 'process', cause: err });
      }
      const state = JSON.parse(text) as { version?: unknown };
      if (state.version !== JOB_STATE_VERSION) {
        throw new DaemonError(`${file(name)}: job state version ${JSON.stringify(state.version)}, expected ${JOB_STATE_VERSION}`, { kind: 'store', scope: 'process' });
      }
      return state as JobState;
    },
    async save(state) {
      assertSafePathSegment(state.name, 'provisioning job name');
      const dir = await openSafeDir(await ensureDirectory(root, { mode: 0o700, label: 'state.dir' }), ['provision'], { mode: 0o700, tighten: true });
      try {
        await writeFileAtomic(dir, `${state.name}.json`, `${JSON.stringify(state)}\n`, { mode: 0o600 });
      } finally {
        await dir.close();
      }
    },
  };
}
