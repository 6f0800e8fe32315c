/**
 * The process logger: pino JSON (default) or pino-pretty, with every secret field redacted by path
 * (DESIGN.md §6: AccessKey secret, STS token, signatures, webhook secret and DeviceSecret never reach a log
 * line). Redaction works on field names, so code must still never put a secret inside a message string.
 */
import { createRequire } from 'node:module';

import { pino } from 'pino';
import type { DestinationStream, Level, Logger } from 'pino';
import type PinoPretty from 'pino-pretty';

import { escapeControlInJson } from './terminal-text.js';

export type { Logger } from 'pino';

/** Field names that hold secrets anywhere in our log objects. */
export const SECRET_FIELD_NAMES: readonly string[] = Object.freeze([
  'accessKeySecret',
  'AccessKeySecret',
  'access_key_secret',
  'securityToken',
  'SecurityToken',
  'security_token',
  'signature',
  'Signature',
  'authorization',
  'Authorization',
  'deviceSecret',
  'DeviceSecret',
  'secret',
  'webhookSecret',
  'password',
  'x-acs-security-token',
  'x-ibw-signature',
  'X-IBW-Signature',
]);

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function segment(name: string): string {
  return IDENT.test(name) ? `.${name}` : `["${name}"]`;
}

/**
 * pino `redact` paths: each name in {@link SECRET_FIELD_NAMES} at the top level and one to three levels
 * down (`name`, `*.name`, `*.*.name`, `*.*.*.name`), plus `headers.*` spellings.
 */
export const REDACT_PATHS: readonly string[] = Object.freeze(
  SECRET_FIELD_NAMES.flatMap((name) => {
    const s = segment(name);
    const top = s.startsWith('.') ? s.slice(1) : s;
    return [top, `*${s}`, `*.*${s}`, `*.*.*${s}`];
  }),
);

export interface LoggerOptions {
  /** Lowest level written. @default 'info' */
  level?: Level | 'silent';
  /** `json`: one JSON object per line; `pretty`: human-readable (pino-pretty). @default 'json' */
  format?: 'json' | 'pretty';
  /** Where lines go. @default stdout */
  destination?: DestinationStream | NodeJS.WritableStream;
  /** Extra fields on every line. @default {} (pino's pid/hostname are omitted) */
  base?: Record<string, unknown>;
  /** Pretty format only: ANSI colours (the caller decides, see ops/color.ts: NO_COLOR, a terminal). @default false */
  color?: boolean;
}

/** Creates the root logger (children per batch come from `logger.child({applyId, productKey})`). */
export function createLogger(options: LoggerOptions = {}): Logger {
  const config = {
    level: options.level ?? 'info',
    base: options.base ?? {},
    redact: { paths: [...REDACT_PATHS], censor: '[REDACTED]' },
    serializers: { err: pino.stdSerializers.err },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (options.format === 'pretty') {
    // NOTE: loaded on first use (it is CommonJS, so synchronously): JSON logging and `status` do not pay for it.
    const pinoPretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    const stream = pinoPretty({
      destination: options.destination ?? 1,
      colorize: options.color ?? false,
      translateTime: 'SYS:standard',
      // NOTE: for people the message line says it all (an event, a config issue: file:line:col: path: message);
      // the `event` and `issue` objects stay in JSON output.
      ignore: 'pid,hostname,event,issue',
      sync: true,
    });
    // NOTE: pretty lines go to a terminal, and names, labels and error texts are user input: control and
    // reordering characters in any string of the line (message, fields, child bindings, errors) are escaped in
    // the JSON before pino-pretty decodes and prints it.
    const escaping = { write: (line: string) => stream.write(escapeControlInJson(line)) };
    return pino(config, escaping);
  }
  return pino(config, options.destination ?? pino.destination({ dest: 1, sync: false }));
}

