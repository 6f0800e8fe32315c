import { Writable } from 'node:stream';

import { pino } from 'pino';
import type { Logger } from 'pino';

import type { CredentialsProvider } from '../../../src/alibaba/credentials.js';
import type { AttemptInfo, RpcClientOptions } from '../../../src/alibaba/rpc-client.js';
import { createLogger } from '../../../src/ops/logger.js';

export const AK_ID = 'testAccessKeyId';
export const AK_SECRET = 'testSecret-9f8e7d6c5b4a';
export const STS_TOKEN = 'CAIS+sts/token=with:odd*chars!9876543210';

export function staticCredentials(securityToken: string | null = null): CredentialsProvider & { calls: number } {
  const p = {
    calls: 0,
    get() {
      p.calls += 1;
      return Promise.resolve({ accessKeyId: AK_ID, accessKeySecret: AK_SECRET, securityToken });
    },
  };
  return p;
}

/** A logger that keeps every line (parsed) and the raw text. */
export function captureLogger(level: 'trace' | 'debug' | 'info' = 'trace'): {
  logger: Logger;
  lines: Record<string, unknown>[];
  text: () => string;
} {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const logger = createLogger({ level, format: 'json', destination: stream });
  return {
    logger,
    get lines() {
      return chunks
        .join('')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    text: () => chunks.join(''),
  };
}

export const silentLogger: Logger = pino({ enabled: false });

/** Client options for tests: tiny retry delays, short timeouts. */
export function testOptions(
  endpoint: string,
  extra: Partial<RpcClientOptions> = {},
): RpcClientOptions & { attempts: AttemptInfo[] } {
  const attempts: AttemptInfo[] = [];
  return {
    endpoint,
    credentials: staticCredentials(),
    retryBaseDelayMs: 1,
    retryMaxDelayMs: 2,
    requestTimeoutMs: 2_000,
    onAttempt: (info) => attempts.push(info),
    logger: silentLogger,
    ...extra,
    attempts,
  };
}
