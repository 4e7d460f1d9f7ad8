/**
 * Waiting with an `AbortSignal`: the wait is given up, never the operation.
 * Aborting rejects the caller's promise with `signal.reason`; what it waited
 * for (a drain, a removal, a close) carries on to its own deadline.
 *
 * @module
 * @internal
 */
import * as v from './validate.js';

/** Throws `INVALID_ARGUMENT` unless `value` is an `AbortSignal` (or `undefined`). */
export function checkSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null) throw v.invalid(name, 'an AbortSignal', value);
  const s = value as { aborted?: unknown; addEventListener?: unknown };
  if (typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function') throw v.invalid(name, 'an AbortSignal', value);
  return value as AbortSignal;
}

/**
 * `promise`, or a rejection with `signal.reason` once `signal` aborts,
 * whichever comes first. No listener is left on the signal afterwards.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: Error) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
