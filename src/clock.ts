import * as v from './validate.js';

/**
 * Time as the library sees it. Injected so interval logic can be tested with a
 * fake clock, without monkeypatching timers.
 */
export interface Clock {
  /** Milliseconds since the epoch, as `Date.now()`. */
  now(): number;
  /** As `setTimeout`; the handle is only ever passed back to `clearTimeout`. */
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * The real clock. Its timers are `unref()`ed, so a pool or probe never keeps a
 * process alive on its own: the listening server or the open sockets do.
 */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  setTimeout(callback: () => void, ms: number): unknown {
    const timer = setTimeout(callback, ms);
    timer.unref();
    return timer;
  },
  clearTimeout(handle: unknown): void {
    clearTimeout(handle as NodeJS.Timeout);
  },
});

/**
 * The clock an option names, or the real one when it names none. Throws
 * `INVALID_ARGUMENT` naming `name` when it is not a {@link Clock}.
 *
 * @internal
 */
export function resolveClock(clock: Clock | undefined, name = 'clock'): Clock {
  const resolved = clock ?? systemClock;
  if (typeof resolved?.now !== 'function' || typeof resolved.setTimeout !== 'function' || typeof resolved.clearTimeout !== 'function') {
    throw v.invalid(name, 'a Clock ({ now, setTimeout, clearTimeout })', resolved);
  }
  return resolved;
}
