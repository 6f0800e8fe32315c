import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export const REPO = resolve(import.meta.dirname, '../..');
export const CLI = resolve(REPO, 'src/cli.ts');
/** tsx's loader by absolute URL, so children can run from any working directory. */
export const TSX_LOADER = pathToFileURL(resolve(REPO, 'node_modules/tsx/dist/loader.mjs')).href;

export const SIM_ENV = {
  ALIBABA_CLOUD_ACCESS_KEY_ID: 'SimAccessKeyId',
  ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'SimAccessKeySecret',
};

export interface Child {
  proc: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when a stdout line matches. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** Runs the CLI from source (tsx), so tests exercise the current code without a build. */
export function runCli(args: string[], env: Record<string, string> = {}, cwd = REPO): Child {
  const proc = spawn(process.execPath, ['--import', TSX_LOADER, CLI, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const watchers: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  let buf = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const line of lines) {
      stdout.push(line);
      for (const w of [...watchers]) {
        if (w.pattern.test(line)) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  proc.stderr.on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = once(proc, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  return {
    proc,
    stdout,
    stderr,
    exited,
    waitFor(pattern, timeoutMs = 20_000) {
      const hit = stdout.find((l) => pattern.test(l));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; stderr: ${stderr.join('')}; stdout tail: ${stdout.slice(-5).join('\n')}`)), timeoutMs);
        watchers.push({
          pattern,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}
