/**
 * Argument parsing shared by the commands: node's parseArgs (strict), with errors in the user's words
 * (`unknown option --foo`) instead of parseArgs' advice about positionals.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** Bad command-line usage: exit 2 with the message and the command's help. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The options table of parseArgs. */
export type Options = NonNullable<ParseArgsConfig['options']>;

/** True when `args` asks for help (`-h` or `--help` anywhere before a `--`). */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '-h' || a === '--help') return true;
  }
  return false;
}

type StrictConfig<O extends Options> = { args: string[]; options: O; strict: true; allowPositionals: false };

/** What {@link parseOptions} returns: the typed option values. */
export type OptionValues<O extends Options> = ReturnType<typeof parseArgs<StrictConfig<O>>>['values'];

/** Parses `args` strictly (no positionals); throws {@link UsageError} naming the offending option. */
export function parseOptions<const O extends Options>(args: string[], options: O): OptionValues<O> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(usageMessage(err));
  }
}

/** parseArgs' error as one short sentence naming the option or argument. */
export function usageMessage(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  const quoted = /'([^']*)'/.exec(message)?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted ?? message}`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${JSON.stringify(quoted ?? message)}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const flag = /Option '([^']*)'/.exec(message)?.[1]?.replace(/^-\w, /, '');
      if (flag !== undefined && /argument missing/.test(message)) return `${flag.replace(/ <value>$/, '')} needs a value`;
      if (flag !== undefined && /does not take an argument/.test(message)) return `${flag} does not take a value`;
      return message;
    }
    default:
      return message;
  }
}
