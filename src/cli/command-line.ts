/**
 * The balancer's command line, read with `node:util`'s `parseArgs`: every
 * flag as a {@link Given}, in the order given, and the `--config` path. Only
 * `--NAME VALUE`, `--NAME=VALUE` and the switches (`--insecure`,
 * `--no-rebalance`) are flags; the first thing that is not one is refused
 * with a one-line {@link ConfigError}, as is an unknown flag, a missing value
 * and a flag given twice (`--backend` and `--discover` repeat).
 *
 * `parseArgs` does the lexing only (`strict: false`, `tokens: true`): the
 * checks and their messages are ours, made in argument order, so the first
 * problem is the one reported, whatever follows it.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, configKeys, isKey, switches, type ConfigKey } from './config.js';
import { show, type Given } from './config-values.js';

/** What the command line says: the flags (the repeatable ones apart) and the config file to read. */
export interface CommandLine {
  readonly flags: ReadonlyMap<ConfigKey, Given>;
  /** Every `--backend`, in order. */
  readonly backends: readonly Given[];
  /** Every `--discover`, in order. */
  readonly discover: readonly Given[];
  readonly configPath: string | undefined;
}

/** Every flag with the kind of value it takes: a switch takes none; `parseArgs` then never takes the next argument for its value. */
const options: NonNullable<ParseArgsConfig['options']> = Object.fromEntries(
  [...configKeys, 'config'].map((name) => [name, { type: (switches as readonly string[]).includes(name) ? 'boolean' : 'string' }]),
);

/**
 * Reads `argv` (without `node` and the script; `--help` and `--version` are
 * looked for before). Throws {@link ConfigError} for the first argument that
 * is not a flag, an unknown flag, a missing or unexpected value, or a flag
 * given twice.
 */
export function readCommandLine(argv: readonly string[]): CommandLine {
  const flags = new Map<ConfigKey, Given>();
  const backends: Given[] = [];
  const discover: Given[] = [];
  let configPath: string | undefined;
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  for (const token of tokens) {
    // A positional, `--`, or a short option (`-x`, one token per letter of `-xyz`): not a flag.
    if (token.kind !== 'option' || !token.rawName.startsWith('--')) {
      throw new ConfigError(`unexpected argument ${show(argv[token.index])} (flags start with --; see --help)`);
    }
    // `--=x` has no name (parseArgs reads it as one named `=x`).
    const name = token.name.startsWith('=') ? '' : token.name;
    const label = `--${name}`;
    if (name !== 'config' && !isKey(name)) throw new ConfigError(`unknown flag ${show(label)} (see --help)`);
    const value = token.value;
    if ((switches as readonly string[]).includes(name)) {
      if (value !== undefined) throw new ConfigError(`${label} takes no value`);
    } else if (value === undefined || (!token.inlineValue && value.startsWith('--'))) {
      // parseArgs takes the next argument whatever it is; a flag there means this one has no value.
      throw new ConfigError(`${label} needs a value (see --help)`);
    }
    if (name === 'config') {
      if (configPath !== undefined) throw new ConfigError('--config given twice');
      if (value === undefined || value === '') throw new ConfigError('--config needs a file path');
      configPath = value;
      continue;
    }
    if (!isKey(name)) continue;
    const given: Given = { value: value ?? true, label, fromFile: false, baseDir: undefined };
    if (name === 'backend') backends.push(given);
    else if (name === 'discover') discover.push(given);
    else if (flags.has(name)) throw new ConfigError(`${label} given twice`);
    else flags.set(name, given);
  }
  return { flags, backends, discover, configPath };
}
