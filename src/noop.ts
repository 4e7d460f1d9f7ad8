/**
 * The one do-nothing function: a swallowed error, an ignored settlement.
 * Shared, so a listener added with it can be removed with it.
 *
 * @module
 * @internal
 */

/** Does nothing. */
export function noop(): void {}
