import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

import { COMMAND_HELP } from '../../../src/commands/help.js';
import { main } from '../../../src/main.js';
import { colorEnabled } from '../../../src/ops/color.js';
import { createLogger } from '../../../src/ops/logger.js';
import { runCli } from '../../helpers/child.js';
import { CaptureStream, memoryIo } from '../../helpers/memory-io.js';

const VERSION = (JSON.parse(readFileSync(resolve(import.meta.dirname, '../../../package.json'), 'utf8')) as { version: string }).version;

async function run(argv: string[], env: Record<string, string> = {}) {
  const m = memoryIo(argv, env);
  const code = await main(m.io);
  return { code, out: m.stdout.text, err: m.stderr.text };
}

describe('CLI conventions (in-process)', () => {
  it.each([['--help'], ['-h'], ['help']])('%s prints the global usage and exits 0', async (flag) => {
    const r = await run([flag]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: iot-batch-watcher \[command\]/);
    expect(r.out).toContain('redeliver');
    expect(r.err).toBe('');
  });

  it.each(['run', 'status', 'wait', 'demo', 'redeliver', 'version'])('%s --help and -h print that command’s own help', async (cmd) => {
    for (const flag of ['--help', '-h']) {
      const r = await run([cmd, flag]);
      expect(r.code).toBe(0);
      expect(r.out).toBe(COMMAND_HELP[cmd]);
      expect(r.out).toMatch(new RegExp(`^Usage: iot-batch-watcher ${cmd === 'run' ? '\\[run\\]' : cmd}`));
    }
  });

  it('--help wins wherever it is among the options', async () => {
    const r = await run(['status', '--json', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toBe(COMMAND_HELP.status);
  });

  it('validate --help prints validate’s help, not the global one', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await run(['validate', flag]);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^usage: iot-batch-watcher validate/i);
      expect(r.out).not.toContain('Commands:');
    }
  });

  it('simulator --help prints the simulator’s options', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await run(['simulator', flag]);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^Usage: iot-batch-watcher simulator/);
      expect(r.out).toContain('--time-scale');
    }
  });

  it.each([['--version'], ['-V'], ['version']])('%s prints the package.json version and exits 0', async (flag) => {
    const r = await run([flag]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(`${VERSION}\n`);
  });

  it.each([
    ['run', '--bogus'],
    ['status', '--bogus'],
    ['wait', '--bogus'],
    ['demo', '--bogus'],
    ['redeliver', '--bogus'],
    ['validate', '--bogus'],
    ['simulator', '--bogus'],
    ['status', '-z'],
  ])('%s %s exits 2 with a message naming the option', async (cmd, opt) => {
    const r = await run([cmd, opt]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(opt);
    expect(r.out).toBe('');
  });

  it('an option without its value, a stray argument and an unknown command are usage errors in plain words', async () => {
    const noValue = await run(['status', '--config']);
    expect(noValue.code).toBe(2);
    expect(noValue.err).toMatch(/^status: --config needs a value \(see iot-batch-watcher status --help\)/);
    const stray = await run(['status', 'extra']);
    expect(stray.code).toBe(2);
    expect(stray.err).toContain('unexpected argument "extra"');
    const unknown = await run(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/unknown command "frobnicate"/);
    const badState = await run(['status', '--state', 'done']);
    expect(badState.code).toBe(2);
    expect(badState.err).toMatch(/--state: expected one of pending, fetching, settled, parked, got "done"/);
  });
});

describe('NO_COLOR', () => {
  const tty = new CaptureStream(true);
  const pipe = new CaptureStream(false);

  it('colour only on a terminal, never with NO_COLOR, always with FORCE_COLOR', () => {
    expect(colorEnabled({}, tty)).toBe(true);
    expect(colorEnabled({}, pipe)).toBe(false);
    expect(colorEnabled({ NO_COLOR: '1' }, tty)).toBe(false);
    expect(colorEnabled({ NO_COLOR: '' }, tty)).toBe(true); // no-color.org: set *and not empty*
    expect(colorEnabled({ FORCE_COLOR: '1' }, pipe)).toBe(true);
    expect(colorEnabled({ NO_COLOR: '1', FORCE_COLOR: '1' }, pipe)).toBe(false);
    expect(colorEnabled({ TERM: 'dumb' }, tty)).toBe(false);
  });

  it('pretty logs carry ANSI colours when allowed and none without', () => {
    const coloured = new CaptureStream(true);
    createLogger({ format: 'pretty', destination: coloured, color: true }).warn({ applyId: '1' }, 'hello');
    // eslint-disable-next-line no-control-regex
    expect(coloured.text).toMatch(/\u001b\[\d+m/);
    const plain = new CaptureStream(true);
    createLogger({ format: 'pretty', destination: plain, color: colorEnabled({ NO_COLOR: '1' }, plain) }).warn({ applyId: '1' }, 'hello');
    expect(plain.text).toContain('hello');
    // eslint-disable-next-line no-control-regex
    expect(plain.text).not.toMatch(/\u001b/);
  });
});

describe('CLI conventions through the executable', () => {
  it('--version, status --help and an unknown option behave the same in a child process', async () => {
    const version = runCli(['--version']);
    expect((await version.exited).code).toBe(0);
    expect(version.stdout).toEqual([VERSION]);
    const help = runCli(['status', '--help']);
    expect((await help.exited).code).toBe(0);
    expect(`${help.stdout.join("\n")}\n`).toBe(COMMAND_HELP.status);
    const bad = runCli(['status', '--nope']);
    expect((await bad.exited).code).toBe(2);
    expect(bad.stderr.join('')).toContain('unknown option --nope');
  }, 30_000);
});
