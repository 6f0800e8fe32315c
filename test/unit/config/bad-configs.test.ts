/**
 * The corpus of bad configuration files: each file's complete list of messages, asserted exactly, so a change in
 * wording or position is a visible decision. Files live in test/fixtures/config/bad/.
 */

import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { loadConfigFile } from '../../../src/config/load.js';
import { ConfigError, formatConfigIssues } from '../../../src/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dir = 'test/fixtures/config/bad';

const DURATION = 'expected a duration > 0 like "30s", "5m" or milliseconds';
const APPLY_ID = 'expected an ApplyId: a positive integer, or a string of digits without leading zeros';
const CRON = 'expected a cron expression like "*/15 * * * *" (minute hour day-of-month month day-of-week)';
const HTTP_LOOPBACK = 'http:// is allowed only for a loopback host (127.0.0.0/8, ::1, localhost); use https://';
const BATCH_KEYS = 'applyId, productKey, name, until, register, iotInstanceId, regionId, labels, polling, account';

const EXPECTED: Record<string, string[]> = {
  'syntax-error.yaml': [
    '6:1: (root): YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]',
  ],
  'wrong-types.yaml': [
    '3:21: alibaba.signatureVersion: expected "v1" or "v3", got `3` (number)',
    '5:16: rateLimit.concurrency: expected an integer from 1 to 256, got `"8"` (string)',
    '7:10: devices.fetch: expected true or false, got `"yes"` (string)',
    '11:21: batches[0].labels.line: expected a string (quote numbers and booleans), got `3` (number)',
  ],
  'unknown-key.yaml': [
    '3:3: alibaba.accessKeySecret: unknown key, expected one of: regionId, endpoint, iotInstanceId, signatureVersion, ' +
      'requestTimeout, credentials, failureWarnAfter; secrets never live in this file: set ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET or *_FILE in the environment',
    '5:3: polling.maxDelays: unknown key, expected one of: initialDelay, maxDelay, multiplier, stalledAfter, timeout, ' +
      'awaitingRegistrationDelay (did you mean "maxDelay"?)',
  ],
  'duplicate-batch.yaml': [
    '8:5: batches[2]: duplicate batch a1BwAGVxxxx/1295006: the same productKey and applyId are already declared at batches[0] (line 4)',
  ],
  'duplicate-key.yaml': ['5:3: polling.maxDelay: duplicate key, first defined at line 4'],
  'bad-duration.yaml': [`9:17: batches[1].polling.maxDelay: ${DURATION}, got \`"soon"\` (string)`],
  'bad-cron.yaml': [`4:10: housekeeping.prune: ${CRON}, got \`"0 25 * * *"\` (string): 25 is a invalid expression for hour`],
  'http-endpoint.yaml': [
    `3:13: alibaba.endpoint: expected an https:// URL without a path, got \`"http://iot.cn-shanghai.aliyuncs.com"\` (string): ${HTTP_LOOPBACK}`,
  ],
  'register-checked.yaml': [
    '7:15: batches[0].register: expected register: false with until: checked, got `true` (boolean): a batch watched until ' +
      'checked stops at CHECK_SUCCESS, before any registration, so it cannot also register',
  ],
  'unsafe-applyid.yaml': [
    `4:14: batches[0].applyId: ${APPLY_ID}, got \`9007199254740993\` (integer): integers above 9007199254740991 (2^53 - 1) ` +
      'lose precision, so write this ApplyId as a quoted string, "9007199254740993"',
  ],
  'missing-productkey.yaml': [
    '4:5: batches[0].productKey: expected a ProductKey (letters, digits, "_" or "-"), but the key is missing',
  ],
  'empty.yaml': ['1:1: (root): expected a mapping of configuration sections (alibaba, polling, batches, …), got an empty file'],
  'not-a-mapping.yaml': ['1:1: (root): expected a mapping of configuration sections (alibaba, polling, batches, …), got a list'],
  'delays.yaml': ['8:30: batches[0].polling.initialDelay: expected a duration ≤ maxDelay (10s, from polling.maxDelay), got `"30s"` (string)'],
  'qps-limit.yaml': [
    "4:14: rateLimit.statusQps: expected a number > 0 and ≤ 30 (Alibaba's account limit for QueryBatchRegisterDeviceStatus is 30 QPS), got `31` (number)",
    "5:12: rateLimit.pageQps: expected a number > 0 and ≤ 50 (Alibaba's account limit for QueryPageByApplyId is 50 QPS), got `0` (number)",
  ],
  'webhook.yaml': [
    '6:16: output.webhook.secretEnv: expected the name of an environment variable (letters, digits and "_", not starting ' +
      'with a digit), got a string of 14 characters that is not one (not shown: it may be a secret)',
    `7:14: output.webhook.timeout: ${DURATION}, got \`"0s"\` (string)`,
  ],
  'several-errors.yaml': [
    '3:3: alibaba.regionId: expected a region id like "cn-shanghai", but the key is missing',
    `3:13: alibaba.endpoint: expected an https:// URL without a path, got \`"http://10.0.0.5:8080"\` (string): ${HTTP_LOOPBACK}`,
    `5:17: polling.initialDelay: ${DURATION}, got \`"1.5s"\` (string)`,
    '6:15: polling.multiplier: expected a number ≥ 1, got `0.5` (number)',
    '8:11: http.listen: expected "host:port" (port 0 to 65535, IPv6 in brackets) or "off", got `"localhost"` (string)',
    `10:14: batches[0].applyId: ${APPLY_ID}, got \`"0123"\` (string)`,
    '12:12: batches[0].until: expected "created" or "checked", got `"later"` (string)',
    `15:5: batches[1].colour: unknown key, expected one of: ${BATCH_KEYS}`,
  ],
};

async function messagesOf(name: string): Promise<string[]> {
  const file = `${dir}/${name}`;
  try {
    await loadConfigFile(file, { cwd: root, env: {} });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const issues = (err as ConfigError).issues;
    for (const issue of issues) expect(issue.file).toBe(file);
    // The message of the error is the formatted list, so a caller printing err.message shows everything.
    expect((err as ConfigError).message).toBe(formatConfigIssues(issues));
    return formatConfigIssues(issues)
      .split('\n')
      .map((line) => line.slice(file.length + 1));
  }
  throw new Error(`${name} was accepted`);
}

describe('bad configuration corpus', () => {
  it('has an expectation for every fixture file and a fixture for every expectation', () => {
    expect(readdirSync(path.join(root, dir)).sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const [name, expected] of Object.entries(EXPECTED)) {
    it(`${name}: reports exactly the expected issues`, async () => {
      expect(await messagesOf(name)).toEqual(expected);
    });
  }

  it('reports several problems of one file at once, in file order', async () => {
    const lines = await messagesOf('several-errors.yaml');
    expect(lines.length).toBe(8);
    const positions = lines.map((l) => l.split(':').slice(0, 2).map(Number) as [number, number]);
    const sorted = [...positions].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    expect(positions).toEqual(sorted);
  });

  it('reports an unreadable file as one issue at line 0', async () => {
    await expect(loadConfigFile('test/fixtures/config/does-not-exist.yaml', { cwd: root })).rejects.toMatchObject({
      issues: [
        {
          file: 'test/fixtures/config/does-not-exist.yaml',
          line: 0,
          col: 0,
          path: '',
          message: 'expected a readable YAML file, got an error: no such file',
        },
      ],
    });
  });
});
