/**
 * Option validation helpers. Messages follow one shape so callers can read them
 * at a glance: ``Expected `fall` to be an integer >= 1, got `0` (number)``.
 *
 * @internal
 */
import { InvalidArgumentError } from './errors.js';

function describe(value: unknown): string {
  let shown: string;
  try {
    shown = typeof value === 'string' ? value : typeof value === 'function' ? 'function' : (JSON.stringify(value) ?? String(value));
  } catch {
    shown = Object.prototype.toString.call(value);
  }
  if (shown.length > 60) shown = `${shown.slice(0, 57)}...`;
  return `\`${shown}\` (${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value})`;
}

export function invalid(name: string, expectation: string, value: unknown): InvalidArgumentError {
  return new InvalidArgumentError(`Expected \`${name}\` to be ${expectation}, got ${describe(value)}`);
}

/** An integer within `[min, max]`. `Infinity` is allowed when `max` is `Infinity`. */
export function integer(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const ok =
    typeof value === 'number' &&
    value >= min &&
    value <= max &&
    (Number.isInteger(value) || (value === Infinity && max === Infinity));
  if (!ok) {
    const range = max === Number.MAX_SAFE_INTEGER || max === Infinity ? `>= ${min}` : `from ${min} to ${max}`;
    throw invalid(name, `an integer ${range}${max === Infinity ? ' (or Infinity)' : ''}`, value);
  }
  return value;
}

/** A finite number within `[min, max]`. */
export function number(name: string, value: unknown, min: number, max = Number.MAX_VALUE): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw invalid(name, max === Number.MAX_VALUE ? `a number >= ${min}` : `a number from ${min} to ${max}`, value);
  }
  return value;
}

export function boolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalid(name, 'a boolean', value);
  return value;
}

export function string(name: string, value: unknown, { empty = false } = {}): string {
  if (typeof value !== 'string' || (!empty && value.length === 0)) {
    throw invalid(name, empty ? 'a string' : 'a non-empty string', value);
  }
  return value;
}

export function oneOf<const T extends string>(name: string, value: unknown, choices: readonly T[]): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw invalid(name, `one of ${choices.map((c) => `'${c}'`).join(', ')}`, value);
  }
  return value as T;
}

export function func<F extends (...args: never[]) => unknown>(name: string, value: unknown): F {
  if (typeof value !== 'function') throw invalid(name, 'a function', value);
  return value as F;
}

export function object(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(name, 'an object', value);
  return value as Record<string, unknown>;
}

/** Throws for keys of `value` not in `known`: a typo in an option name should not pass silently. */
export function knownKeys(name: string, value: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key) && value[key] !== undefined) {
      throw new InvalidArgumentError(`Unknown option \`${name ? `${name}.` : ''}${key}\``);
    }
  }
}
