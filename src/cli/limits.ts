/**
 * The program's numeric limits, in one place. The CLI reaches the library
 * only through its public surface, which does not export the library's own
 * copy of this bound.
 *
 * @module
 */

/**
 * The longest delay a Node timer honours, in ms (about 24.8 days): every
 * duration the program accepts (flags, config keys, admin API deadlines) is
 * bounded by it, as the library bounds its duration options.
 */
export const MAX_MS = 2 ** 31 - 1;
