/**
 * Numeric limits shared by every module.
 *
 * @module
 * @internal
 */

/**
 * The longest delay a Node timer honours, in ms (about 24.8 days): a longer
 * one fires after 1 ms instead, with a `TimeoutOverflowWarning`. Every
 * duration option is bounded by it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;
