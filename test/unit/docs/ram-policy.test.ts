/**
 * config/ram-policy.json grants the five batch-registration actions and nothing else, in the three statements
 * docs/operations.md describes; the minimal policy printed in the document is the first statement; and the daemon
 * really never calls the two batch-creating actions.
 */
import { describe, expect, it } from 'vitest';

import { codeBlocks, readRepoFile, section } from './markdown.js';

interface Statement {
  Effect: string;
  Action: string[];
  Resource: string;
}
interface Policy {
  Version: string;
  Statement: Statement[];
}

const policy = JSON.parse(readRepoFile('config/ram-policy.json')) as Policy;
const doc = readRepoFile('docs/operations.md');

const ALWAYS = ['iot:QueryBatchRegisterDeviceStatus', 'iot:QueryPageByApplyId'];
const REGISTER = ['iot:BatchRegisterDeviceWithApplyId'];
const CREATE = ['iot:BatchCheckDeviceNames', 'iot:BatchRegisterDevice'];

describe('config/ram-policy.json', () => {
  it('is a RAM policy of Allow statements with only the documented keys', () => {
    expect(Object.keys(policy).sort()).toEqual(['Statement', 'Version']);
    expect(policy.Version).toBe('1');
    for (const s of policy.Statement) {
      expect(Object.keys(s).sort()).toEqual(['Action', 'Effect', 'Resource']);
      expect(s.Effect).toBe('Allow');
      // IoT Platform authorizes by API only; its documentation lists "*" as the resource of these actions.
      expect(s.Resource).toBe('*');
    }
  });

  it('holds exactly the five actions, spread as documented', () => {
    expect(policy.Statement.map((s) => s.Action)).toEqual([ALWAYS, REGISTER, CREATE]);
    const all = policy.Statement.flatMap((s) => s.Action);
    expect(new Set(all).size).toBe(5);
    expect(all.every((a) => !a.includes('*'))).toBe(true);
  });

  it('is what the document says, statement by statement', () => {
    const rows = section(doc, 'The RAM policy');
    for (const action of [...ALWAYS, ...REGISTER, ...CREATE]) expect(rows).toContain(`\`${action}\``);
    const blocks = codeBlocks(rows, 'json').map((b) => JSON.parse(b) as Policy);
    expect(blocks).toHaveLength(1);
    expect(blocks[0]!.Statement).toEqual([policy.Statement[0]]);
  });
});

describe('the daemon and the policy', () => {
  it('never calls BatchCheckDeviceNames or BatchRegisterDevice', () => {
    for (const file of ['src/core/watcher.ts', 'src/core/batch-runner.ts', 'src/daemon.ts', 'src/main.ts', 'src/index.ts']) {
      const source = readRepoFile(file);
      expect(source, file).not.toMatch(/\.batchCheckDeviceNames\(|\.batchRegisterDevice\(/);
    }
  });

  it('calls the actions of statements 1 and 2', () => {
    // The API calls of a batch live in the batch runner (src/core/batch-runner.ts).
    const watcher = readRepoFile('src/core/batch-runner.ts');
    expect(watcher).toMatch(/\.queryBatchRegisterDeviceStatus\(/);
    expect(watcher).toMatch(/\.listAllDevicesByApplyId\(/);
    expect(watcher).toMatch(/\.batchRegisterDeviceWithApplyId\(/);
  });
});
