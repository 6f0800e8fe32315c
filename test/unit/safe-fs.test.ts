import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { DaemonError } from '../../src/errors.js';
import { ensureDirectory, openAppendFile, openSafeDir, removeEntry, UNSAFE_PATH, writeFileAtomic } from '../../src/safe-fs.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ibw-safe-fs-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const modeOf = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;
const fail = async (p: Promise<unknown>): Promise<DaemonError> => {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DaemonError);
  return err as DaemonError;
};

describe('ensureDirectory', () => {
  it('creates missing components 0700 whatever the umask, and returns the real path', async () => {
    const old = process.umask(0o277);
    try {
      const real = await ensureDirectory(path.join(dir, 'a', 'b'), { label: 'state.dir' });
      expect(real).toBe(path.join(await realpath(dir), 'a', 'b'));
      expect(await modeOf(path.join(dir, 'a'))).toBe(0o700);
      expect(await modeOf(path.join(dir, 'a', 'b'))).toBe(0o700);
    } finally {
      process.umask(old);
    }
  });

  it('leaves the mode of an existing directory alone', async () => {
    await chmod(dir, 0o755);
    await ensureDirectory(dir);
    expect(await modeOf(dir)).toBe(0o755);
  });

  it('accepts a configured directory that is a symlink (the operator chose it) and resolves it', async () => {
    await mkdir(path.join(dir, 'real'));
    await symlink(path.join(dir, 'real'), path.join(dir, 'link'));
    expect(await ensureDirectory(path.join(dir, 'link'))).toBe(path.join(await realpath(dir), 'real'));
  });

  it('fails fast under /proc with the path and the errno (mkdir -p spins there for ever)', { timeout: 2000 }, async () => {
    const err = await fail(ensureDirectory('/proc/ibw-state/x', { label: 'state.dir' }));
    expect(err.kind).toBe('store');
    expect(err.code).toBe('ENOENT');
    expect(err.message).toContain('state.dir /proc/ibw-state/x');
    expect(err.message).toContain('mkdir /proc/ibw-state failed');
  });

  it('names a component that is a file', async () => {
    await writeFile(path.join(dir, 'file'), 'x');
    const err = await fail(ensureDirectory(path.join(dir, 'file', 'sub'), { label: 'output.resultsDir' }));
    expect(err.code).toBe('ENOTDIR');
    expect(err.message).toContain(`${path.join(dir, 'file')} is not a directory`);
  });
});

describe('openSafeDir and writeFileAtomic', () => {
  it('writes atomically with the exact mode and no temp file left', async () => {
    const root = await ensureDirectory(dir);
    const d = await openSafeDir(root, ['p', 'q']);
    try {
      const old = process.umask(0);
      try {
        const file = await writeFileAtomic(d, 'x.json', 'secret\n', { mode: 0o600 });
        expect(file).toBe(path.join(root, 'p', 'q', 'x.json'));
        expect(await readFile(file, 'utf8')).toBe('secret\n');
        expect(await modeOf(file)).toBe(0o600);
      } finally {
        process.umask(old);
      }
      expect(await readdir(path.join(root, 'p', 'q'))).toEqual(['x.json']);
      expect(await modeOf(path.join(root, 'p'))).toBe(0o700);
    } finally {
      await d.close();
    }
  });

  it('refuses a symlinked component below the root and writes nothing through it', async () => {
    const root = await ensureDirectory(path.join(dir, 'root'));
    const outside = path.join(dir, 'outside');
    await mkdir(outside, { mode: 0o755 });
    await chmod(outside, 0o755);
    await symlink(outside, path.join(root, 'p'));
    const err = await fail(openSafeDir(root, ['p', 'q'], { tighten: true }));
    expect(err.code).toBe(UNSAFE_PATH);
    expect(err.message).toContain(`refusing ${path.join(root, 'p')}: it is a symbolic link`);
    expect(await readdir(outside)).toEqual([]);
    expect(await modeOf(outside)).toBe(0o755);
  });

  it('refuses a component that is a file', async () => {
    const root = await ensureDirectory(dir);
    await writeFile(path.join(root, 'p'), 'x');
    const err = await fail(openSafeDir(root, ['p']));
    expect(err.code).toBe(UNSAFE_PATH);
    expect(err.message).toContain('is not a directory');
  });

  it('replaces a symlink at the target name instead of writing through it', async () => {
    const root = await ensureDirectory(dir);
    const victim = path.join(dir, 'victim.txt');
    await writeFile(victim, 'untouched');
    const d = await openSafeDir(root, ['p']);
    try {
      await symlink(victim, path.join(root, 'p', 'x.json'));
      await writeFileAtomic(d, 'x.json', 'new', { mode: 0o600 });
    } finally {
      await d.close();
    }
    expect(await readFile(victim, 'utf8')).toBe('untouched');
    expect((await lstat(path.join(root, 'p', 'x.json'))).isSymbolicLink()).toBe(false);
    expect(await readFile(path.join(root, 'p', 'x.json'), 'utf8')).toBe('new');
  });

  it('removeEntry removes a file, and a symlink itself rather than its target', async () => {
    const root = await ensureDirectory(dir);
    const victim = path.join(dir, 'victim.txt');
    await writeFile(victim, 'untouched');
    const d = await openSafeDir(root, ['p']);
    try {
      await symlink(victim, path.join(root, 'p', 'link.json'));
      expect(await removeEntry(d, 'link.json')).toBe(true);
      expect(await removeEntry(d, 'link.json')).toBe(false);
    } finally {
      await d.close();
    }
    expect(await readFile(victim, 'utf8')).toBe('untouched');
  });
});

describe('openAppendFile', () => {
  it('creates the file and its missing parents', async () => {
    const file = path.join(dir, 'a', 'events.jsonl');
    const h = await openAppendFile(file, { mode: 0o640 });
    await h.appendFile('x\n');
    await h.close();
    expect(await readFile(file, 'utf8')).toBe('x\n');
    expect(await modeOf(path.join(dir, 'a'))).toBe(0o700);
  });

  it('refuses a file that is a symlink, leaving the target unchanged', async () => {
    const victim = path.join(dir, 'victim.txt');
    await writeFile(victim, 'untouched');
    await symlink(victim, path.join(dir, 'events.jsonl'));
    const err = await fail(openAppendFile(path.join(dir, 'events.jsonl'), { mode: 0o640, label: 'output.eventsFile' }));
    expect(err.code).toBe(UNSAFE_PATH);
    expect(err.message).toContain(`refusing ${path.join(dir, 'events.jsonl')}: it is a symbolic link`);
    expect(await readFile(victim, 'utf8')).toBe('untouched');
  });

  it('refuses a directory', async () => {
    await mkdir(path.join(dir, 'events.jsonl'));
    const err = await fail(openAppendFile(path.join(dir, 'events.jsonl'), { mode: 0o640 }));
    expect(err.code).toBe('EISDIR');
  });
});
