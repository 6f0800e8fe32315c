/**
 * The `accounts` section (DESIGN.md §11, issue #15): inheritance from `alibaba` and `rateLimit`, reserve, the
 * implicit account `default`, batch identity per account, and the errors (all at once, each at file:line:col and
 * naming the account), including the environment check of `validate`.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { checkEnvironment } from '../../../src/config/env-overrides.js';
import { parseConfigText } from '../../../src/config/load.js';
import type { CompiledConfig } from '../../../src/config/types.js';
import { ConfigError } from '../../../src/errors.js';

function compile(text: string): CompiledConfig {
  return parseConfigText(text, 'watcher.yaml', { cwd: '/srv', env: {} });
}

function issuesOf(text: string): string[] {
  try {
    compile(text);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.line}:${i.col}: ${i.path}: ${i.message}`);
    throw err;
  }
  throw new Error('no ConfigError');
}

const TWO = `alibaba:
  regionId: cn-shanghai
  endpoint: http://127.0.0.1:8787
  iotInstanceId: iot-main
  requestTimeout: 5s
rateLimit: { statusQps: 6, pageQps: 7, concurrency: 3 }
accounts:
  - name: fleet-cn
    credentials: { accessKeyIdEnv: CN_ID, accessKeySecretEnv: CN_SECRET, securityTokenEnv: CN_STS }
    rateLimit: { statusQps: 30, pageQps: 50, submitQps: 10 }
    reserve: 20%
  - name: fleet-sg
    regionId: ap-southeast-1
    signatureVersion: v1
    credentials: { mode: chain }
    reserve: 0.5
batches:
  - { applyId: 1, productKey: pk }
  - { applyId: 1, productKey: pk, account: fleet-sg }
  - { applyId: 2, productKey: pk, account: fleet-cn, regionId: cn-beijing }
`;

describe('accounts: compiled', () => {
  it('without accounts, the one account "default" is alibaba + rateLimit, and the old layout stays', () => {
    const c = compile('alibaba: { regionId: cn-shanghai, credentials: chain }\nrateLimit: { statusQps: 9 }\nbatches: [{ applyId: 7, productKey: pk }]\n');
    expect(c.accounts).toEqual([
      expect.objectContaining({
        name: 'default',
        regionId: 'cn-shanghai',
        endpoint: 'https://iot.cn-shanghai.aliyuncs.com',
        credentials: { mode: 'chain' },
        rateLimit: { statusQps: 9, pageQps: 5, submitQps: 5, concurrency: 8 },
        reserve: 0,
      }),
    ]);
    expect(c.batches[0]).toMatchObject({ account: 'default', key: 'pk/7' });
    expect(c.output.resultsLayout).toBeUndefined();
  });

  it('inherits alibaba and rateLimit, applies reserve to every QPS figure, and keys batches per account', () => {
    const c = compile(TWO);
    const [cn, sg] = c.accounts;
    expect(cn).toEqual({
      name: 'fleet-cn',
      regionId: 'cn-shanghai',
      endpoint: 'http://127.0.0.1:8787',
      iotInstanceId: 'iot-main',
      signatureVersion: 'v3',
      requestTimeoutMs: 5_000,
      credentials: { mode: 'env', accessKeyIdEnv: 'CN_ID', accessKeySecretEnv: 'CN_SECRET', securityTokenEnv: 'CN_STS' },
      quota: { statusQps: 30, pageQps: 50, submitQps: 10 },
      rateLimit: { statusQps: 24, pageQps: 40, submitQps: 8, concurrency: 3 },
      reserve: 0.2,
      source: { file: 'watcher.yaml', line: 8, col: 5 },
    });
    expect(sg).toMatchObject({
      name: 'fleet-sg',
      regionId: 'ap-southeast-1',
      // Another region than alibaba's: its public endpoint, not alibaba.endpoint.
      endpoint: 'https://iot.ap-southeast-1.aliyuncs.com',
      signatureVersion: 'v1',
      credentials: { mode: 'chain' },
      quota: { statusQps: 6, pageQps: 7, submitQps: 5 },
      rateLimit: { statusQps: 3, pageQps: 3.5, submitQps: 2.5, concurrency: 3 },
    });
    expect(c.batches.map((b) => [b.account, b.key, b.endpoint])).toEqual([
      ['fleet-cn', 'fleet-cn:pk/1', 'http://127.0.0.1:8787'],
      ['fleet-sg', 'fleet-sg:pk/1', 'https://iot.ap-southeast-1.aliyuncs.com'],
      ['fleet-cn', 'fleet-cn:pk/2', 'https://iot.cn-beijing.aliyuncs.com'],
    ]);
    expect(c.output.resultsLayout).toBe('account');
  });

  it('an account named default keeps the old keys (an existing state directory opens as that account)', () => {
    const c = compile('alibaba: { regionId: cn-shanghai }\naccounts: [{ name: default }]\nbatches: [{ applyId: 7, productKey: pk }]\n');
    expect(c.batches[0]).toMatchObject({ account: 'default', key: 'pk/7' });
  });
});

describe('accounts: errors, all at once, each naming the account', () => {
  it('reports duplicates, budgets above the limit, bad credentials and unknown accounts together', () => {
    const text = `alibaba: { regionId: cn-shanghai }
accounts:
  - name: a
    rateLimit: { statusQps: 31, submitQps: 11 }
  - name: a
    credentials: { mode: chain, accessKeyIdEnv: X }
  - name: b
    credentials: { accessKeyIdEnv: Y }
    reserve: 100%
  - name: Bad_Name
batches:
  - { applyId: 1, productKey: pk, account: c }
  - { applyId: 1, productKey: pk, account: a }
  - { applyId: 1, productKey: pk }
`;
    expect(issuesOf(text)).toEqual([
      `4:29: accounts[0].rateLimit.statusQps: expected a number > 0 and ≤ 30 (Alibaba's account limit for QueryBatchRegisterDeviceStatus is 30 QPS), got \`31\` (number) (account "a")`,
      `4:44: accounts[0].rateLimit.submitQps: expected a number > 0 and ≤ 10 (Alibaba's account limit for BatchCheckDeviceNames and BatchRegisterDevice is 10 QPS), got \`11\` (number) (account "a")`,
      '5:11: accounts[1].name: duplicate account "a": the name is already declared at accounts[0] (line 3)',
      '6:33: accounts[1].credentials.accessKeyIdEnv: expected no accessKeyIdEnv with mode: chain (account "a" reads its credentials from the default chain), got `"X"` (string)',
      '8:18: accounts[2].credentials.accessKeySecretEnv: expected the name of an environment variable, but the key is missing: account "b" reads its credentials from variables (or set mode: chain)',
      '9:14: accounts[2].reserve: expected a share of the quota below 100%: a percentage like "20%" or a fraction from 0 up to (not including) 1, got `"100%"` (string) (account "b")',
      '10:11: accounts[3].name: expected an account name: 1 to 40 lower-case letters, digits or "-", got `"Bad_Name"` (string)',
      '12:44: batches[0].account: unknown account "c", expected one of: "a", "a", "b"',
      '14:5: batches[2]: duplicate batch a:pk/1: the same account, productKey and applyId are already declared at batches[1] (line 13)',
    ]);
  });

  it('without accounts only "default" may be named, and the same batch in two accounts is no duplicate', () => {
    expect(issuesOf('alibaba: { regionId: cn-shanghai }\nbatches: [{ applyId: 1, productKey: pk, account: prod }]\n')).toEqual([
      '2:50: batches[0].account: unknown account "prod": without an accounts section the only account is "default"',
    ]);
    expect(() => compile('alibaba: { regionId: cn-shanghai }\nbatches: [{ applyId: 1, productKey: pk, account: default }]\n')).not.toThrow();
  });
});

describe('accounts: the environment check of validate and start', () => {
  const c = compile(TWO);
  it('names each account whose variables are missing, at its line, never a value', () => {
    const issues = checkEnvironment(c, { CN_ID: 'the-id' });
    expect(issues.map((i) => `${i.file}:${i.line}:${i.col}: ${i.path}: ${i.message}`)).toEqual([
      'watcher.yaml:8:5: accounts[0].credentials: Alibaba Cloud credentials of account "fleet-cn" missing: set CN_SECRET (or CN_SECRET_FILE) ' +
        '(the variables its credentials name), or configure its credentials as { mode: chain }.',
    ]);
    expect(JSON.stringify(issues)).not.toContain('the-id');
  });

  it('reads <NAME>_FILE, and reports NAME with NAME_FILE as a conflict', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ibw-accounts-'));
    const file = path.join(dir, 'secret');
    writeFileSync(file, 'file-secret\n');
    expect(checkEnvironment(c, { CN_ID: 'i', CN_SECRET_FILE: file })).toEqual([]);
    const conflict = checkEnvironment(c, { CN_ID: 'i', CN_SECRET: 's', CN_SECRET_FILE: file });
    expect(conflict.map((i) => i.message)).toEqual(['account "fleet-cn": both CN_SECRET and CN_SECRET_FILE are set; set only one']);
  });
});
