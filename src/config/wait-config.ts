/**
 * The configuration of `iot-batch-watcher wait` (DESIGN.md §7): one batch given by flags, on top of the file's
 * settings when there is a file (its `alibaba`, `polling`, `rateLimit` and `devices`; its batches, sinks and HTTP
 * server are not used). The flags go through the schema of a batch entry, so they follow the file's rules, and
 * every problem is reported in the user's words: `--apply-id: expected …`, `--timeout: …`.
 */

import { DaemonError } from '../errors.js';
import { compileConfigObject, compileSingleBatch, defaultEndpoint } from './compile.js';
import { type ConfigPath, formatPath } from './cross-checks.js';
import { configSchema } from './schema.js';
import type { CompiledConfig } from './types.js';

/** The flags of `wait`, as given (undefined when absent). */
export interface WaitFlags {
  productKey?: string | undefined;
  applyId?: string | undefined;
  until?: string | undefined;
  timeout?: string | undefined;
  register?: boolean | undefined;
  endpoint?: string | undefined;
  regionId?: string | undefined;
  iotInstanceId?: string | undefined;
}

/** Bad flags of `wait`: one line per problem, `--flag: message`. Exit 2. */
export class WaitFlagsError extends DaemonError {
  override name = 'WaitFlagsError';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'), { kind: 'config', scope: 'process', code: 'WaitFlagsInvalid' });
  }
}

const FLAG_OF: Record<string, string> = {
  applyId: '--apply-id',
  productKey: '--product-key',
  until: '--until',
  register: '--register',
  iotInstanceId: '--iot-instance-id',
  regionId: '--region-id',
  'polling.timeout': '--timeout',
};

function flagOf(path: ConfigPath): string {
  return FLAG_OF[formatPath(path)] ?? formatPath(path);
}

/**
 * Builds the CompiledConfig of `wait`.
 *
 * @param base - the file's configuration, or null when `wait` runs without one (then the defaults of DESIGN.md §2).
 * @throws WaitFlagsError naming each bad or missing flag.
 */
export function compileWaitConfig(flags: WaitFlags, base: CompiledConfig | null, cwd: string): CompiledConfig {
  const problems: string[] = [];
  if (flags.productKey === undefined || flags.productKey === '') problems.push('--product-key: required (the ProductKey of the batch)');
  if (flags.applyId === undefined || flags.applyId === '') problems.push('--apply-id: required (the ApplyId to watch)');

  let endpoint: string | undefined;
  if (flags.endpoint !== undefined) {
    const checked = configSchema.shape.alibaba.unwrap().shape.endpoint.safeParse(flags.endpoint);
    if (checked.success && checked.data !== undefined) endpoint = new URL(checked.data).origin;
    else if (!checked.success) problems.push(`--endpoint: ${checked.error.issues[0]?.message ?? 'invalid'}`);
  }

  // Without a file: the defaults of DESIGN.md §2 (the region comes from --region-id below).
  const root = base ?? compileConfigObject({ alibaba: { regionId: 'cn-shanghai' } }, { cwd });
  const regionId = flags.regionId ?? root.alibaba.regionId;
  // Another region than the file's talks to that region's public endpoint, unless --endpoint says otherwise.
  const regionEndpoint = endpoint ?? (regionId === root.alibaba.regionId ? root.alibaba.endpoint : defaultEndpoint(regionId));

  const entry: Record<string, unknown> = {};
  if (flags.applyId) entry.applyId = flags.applyId;
  if (flags.productKey) entry.productKey = flags.productKey;
  if (flags.until !== undefined) entry.until = flags.until;
  if (flags.register !== undefined) entry.register = flags.register;
  if (flags.iotInstanceId !== undefined) entry.iotInstanceId = flags.iotInstanceId;
  if (flags.regionId !== undefined) entry.regionId = flags.regionId;
  if (flags.timeout !== undefined) entry.polling = { timeout: flags.timeout };

  // NOTE: `wait` watches its batch under the file's first account (the one a batch without `account` gets).
  const account = root.accounts[0]!;
  const compiled = compileSingleBatch(entry, {
    account: account.name,
    regionId,
    iotInstanceId: root.alibaba.iotInstanceId,
    endpoint: regionEndpoint,
    polling: root.polling,
  });
  if (!compiled.ok) {
    for (const issue of compiled.issues) {
      // A missing applyId/productKey is already reported above in the flags' words.
      const at = formatPath(issue.path);
      if ((at === 'applyId' && !flags.applyId) || (at === 'productKey' && !flags.productKey)) continue;
      problems.push(`${flagOf(issue.path)}: ${issue.message}`);
    }
  }
  if (problems.length > 0 || !compiled.ok) throw new WaitFlagsError(problems);

  return {
    ...root,
    alibaba: { ...root.alibaba, regionId, endpoint: regionEndpoint },
    accounts: [{ ...account, regionId, endpoint: regionEndpoint }],
    polling: compiled.batch.polling,
    // NOTE: wait keeps its result in memory and prints it; it must not append to the daemon's events file or
    // call its webhook.
    output: { ...root.output, eventsFile: null, webhook: null },
    http: { listen: null },
    batches: [compiled.batch],
  };
}
