/** Command-line options parsed with node:util's parseArgs, an unknown one reported with the options that exist. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { closestKey } from '../config/key-hints.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * An option the command does not take. `run` names the command (it knows which one ran); this names the option, the
 * one meant when it is a near miss, and the options there are.
 */
export class UnknownOptionError extends Error {
  constructor(
    readonly option: string,
    readonly known: readonly string[],
    options: { cause: unknown },
  ) {
    super(`unknown option ${option}`, options);
  }

  /** `unknown option --limt for \`vigil sessions list\` (did you mean --limit?); options: --config, …`. */
  describe(command: string): string {
    const bare = this.option.replace(/^-+/, '').split('=')[0]!;
    const meant = closestKey(
      bare,
      this.known.map((o) => o.replace(/^-+/, '')),
    );
    const hint = meant ? ` (did you mean --${meant}?)` : '';
    return `${this.message} for \`${command}\`${hint}; options: ${this.known.join(', ')}`;
  }
}

/** parseArgs with positionals allowed and unknown options refused as an UnknownOptionError. */
export function parseOptions<O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw err;
    // Node's message: "Unknown option '--limt'. To specify a positional argument starting with a '-', …".
    const option = /'(-[^']*)'/.exec((err as Error).message)?.[1] ?? '(unknown)';
    const known = Object.entries(options).map(([name, o]) => (o.short ? `-${o.short}/--${name}` : `--${name}`));
    throw new UnknownOptionError(option, known, { cause: err });
  }
}
