import { Writable } from 'node:stream';

import { describe, expect, it } from 'vitest';

import { REDACT_PATHS, SECRET_FIELD_NAMES, createLogger } from '../../../src/ops/logger.js';

function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  return {
    stream: new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c.toString('utf8'));
        cb();
      },
    }),
    text: () => chunks.join(''),
  };
}

const SECRET = 'S3cr3t-value-XYZ';

describe('createLogger', () => {
  it('redacts every secret field name at depth 0 to 3', () => {
    const out = sink();
    const log = createLogger({ level: 'trace', destination: out.stream });
    for (const name of SECRET_FIELD_NAMES) {
      log.trace({ [name]: SECRET }, 'depth0');
      log.trace({ a: { [name]: SECRET } }, 'depth1');
      log.trace({ a: { b: { [name]: SECRET } } }, 'depth2');
      log.trace({ a: { b: { c: { [name]: SECRET } } } }, 'depth3');
    }
    log.trace({ headers: { authorization: SECRET, 'x-acs-security-token': SECRET } }, 'headers');
    log.trace({ req: { headers: { Authorization: SECRET } } }, 'nested headers');
    const lines = out.text().trim().split('\n');
    expect(lines).toHaveLength(SECRET_FIELD_NAMES.length * 4 + 2);
    expect(out.text()).not.toContain(SECRET);
    expect(out.text()).toContain('[REDACTED]');
    expect(REDACT_PATHS).toContain('*.*.deviceSecret');
    expect(REDACT_PATHS).toContain('["x-acs-security-token"]');
  });

  it('keeps ordinary fields and serialises errors under err', () => {
    const out = sink();
    const log = createLogger({ level: 'info', destination: out.stream });
    const err = Object.assign(new Error('boom'), { code: 'X.Y' });
    log.info({ applyId: '9007199254740993', err }, 'hello');
    log.debug({ hidden: true }, 'below level');
    const line = JSON.parse(out.text()) as Record<string, unknown> & { err: Record<string, unknown> };
    expect(line).toMatchObject({ level: 30, msg: 'hello', applyId: '9007199254740993' });
    expect(line.err).toMatchObject({ type: 'Error', message: 'boom', code: 'X.Y' });
    expect(typeof line.time).toBe('string');
    expect(line.pid).toBeUndefined();
  });

  it('pretty format writes human-readable lines, still redacted', () => {
    const out = sink();
    const log = createLogger({ level: 'info', format: 'pretty', destination: out.stream });
    log.info({ deviceSecret: SECRET, applyId: '1' }, 'pretty line');
    const text = out.text();
    expect(text).toContain('pretty line');
    expect(text).toContain('INFO');
    expect(text).not.toContain(SECRET);
    expect(() => JSON.parse(text) as unknown).toThrow();
  });
});
