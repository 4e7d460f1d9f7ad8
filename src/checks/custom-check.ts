/**
 * A caller's check function made to behave like a built-in check.
 *
 * @module
 */
import { CheckError } from '../errors.js';
import { localErrorCode } from '../local-errors.js';
import * as v from '../validate.js';
import { abortError, isLeaving, type CheckFunction, type LeavingAnswer } from './check.js';

/**
 * Wraps a caller's check function so it behaves like a built-in one: a throw
 * (or a synchronous throw) becomes a `CheckError` with layer `custom` unless it
 * already is a `CheckError`, and the wrapper settles as soon as the signal
 * fires even if the function ignores it (its late outcome is then dropped).
 *
 * @example
 * ```ts
 * const check = customCheck(async (backend, { signal }) => { await ping(backend, signal); });
 * ```
 */
export function customCheck(fn: CheckFunction): CheckFunction {
  v.func('check', fn);
  return (backend, context) =>
    new Promise<void | LeavingAnswer>((resolve, reject) => {
      const { signal } = context;
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const onAbort = (): void => reject(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      new Promise<unknown>((run) => run(fn(backend, context))).then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          // Only a well-formed leaving answer says anything; any other value is a pass, as before.
          resolve(isLeaving(value) ? { outcome: 'leaving', message: String(value.message) } : undefined);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          if (err instanceof CheckError) reject(err);
          else if (signal.aborted) reject(abortError(signal));
          else {
            const detail = err instanceof Error ? err.message : String(err);
            // A check that could not even run here (EMFILE...) says nothing about the backend.
            const layer = localErrorCode(err) === undefined ? 'custom' : 'local';
            reject(new CheckError(layer, `Custom check of \`${backend.id}\` failed: ${detail}`, { cause: err }));
          }
        },
      );
    });
}
