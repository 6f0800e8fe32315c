import { describe, expect, it } from 'vitest';

import { findSecretPath } from '../../../src/sinks/secret-guard.js';

import { makeEvent } from './helpers.js';

describe('findSecretPath', () => {
  it('finds deviceSecret at any depth, case-insensitively', () => {
    expect(findSecretPath(makeEvent())).toBeNull();
    expect(findSecretPath({ a: { devices: [{ deviceName: 'd', deviceSecret: 's' }] } })).toBe('a.devices[0].deviceSecret');
    expect(findSecretPath({ DeviceSecret: 'x' })).toBe('DeviceSecret');
    expect(findSecretPath([1, 'deviceSecret', { ok: true }])).toBeNull();
  });

  it('tolerates cycles', () => {
    const a: Record<string, unknown> = { x: 1 };
    a.self = a;
    expect(findSecretPath(a)).toBeNull();
  });
});
